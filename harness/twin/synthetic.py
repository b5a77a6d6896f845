"""Templated routing questions that widen the classifier's training data.

The routing corpus has a few hundred questions; a model trained from scratch on them alone
memorises them and misroutes unseen phrasings. These templates, written for this project from
the router's own route definitions (fresh facts → search; knowledge and reasoning → local),
teach the cue words. Local templates deliberately reuse search topics (weather, prices, news)
under a local task (translate, write, explain, compute), and search templates reuse local topics
(programming languages) under a fresh-facts question, so that the task decides, not the topic.
"""

from __future__ import annotations

import random
import re

CITIES = (
    "London",
    "Paris",
    "Tokyo",
    "Chicago",
    "Berlin",
    "Madrid",
    "Toronto",
    "Sydney",
    "Mumbai",
    "Seoul",
    "Denver",
    "Lisbon",
    "Oslo",
    "Dublin",
    "Austin",
    "Nairobi",
    "Cairo",
    "Boston",
    "Seattle",
    "Rome",
    "Vienna",
    "Prague",
    "Lima",
    "Osaka",
    "Manchester",
    "Phoenix",
)
WHEN = (
    "today",
    "tonight",
    "tomorrow",
    "this weekend",
    "right now",
    "this afternoon",
    "on Friday",
    "this morning",
)
DAYS = ("Sunday", "Monday", "the bank holiday", "Christmas Eve", "Saturday", "New Year's Day")
NEWS = (
    "the election results",
    "the rail strike",
    "the wildfire near {city}",
    "the trade talks",
    "the interest rate decision",
    "the airline merger",
    "the tech layoffs",
    "the storm warning",
    "the chip shortage",
    "the housing market",
    "the peace talks",
    "the new tariffs",
    "the product recall",
    "the central bank meeting",
    "the protests in {city}",
    "the power outage in {city}",
    "the budget vote",
    "the earthquake",
)
PRODUCTS = (
    "eggs at Walmart",
    "a PS5 at Best Buy",
    "gas in {city}",
    "an iPhone at Target",
    "flights from {city} to {city2}",
    "a train ticket from {city} to {city2}",
    "a hotel room in {city} this weekend",
    "a Tesla Model 3",
    "a dozen roses",
    "a ticket to see {team} play",
)
ASSETS = (
    "Bitcoin",
    "Ethereum",
    "gold",
    "Apple stock",
    "Nvidia shares",
    "the euro",
    "oil",
    "the S&P 500",
    "the Nasdaq",
    "Tesla stock",
    "Amazon shares",
    "silver",
    "the yen",
)
TEAMS = (
    "the Lakers",
    "the Yankees",
    "Arsenal",
    "Real Madrid",
    "the Chiefs",
    "the Celtics",
    "Manchester City",
    "the Dodgers",
    "Bayern Munich",
    "the Warriors",
    "the Packers",
    "Liverpool",
    "the Cubs",
    "Juventus",
)
PLAYERS = (
    "LeBron James",
    "Mbappe",
    "Shohei Ohtani",
    "Patrick Mahomes",
    "Erling Haaland",
    "Stephen Curry",
    "Carlos Alcaraz",
    "Lionel Messi",
    "Jannik Sinner",
    "Max Verstappen",
)
EVENTS = (
    "the Champions League",
    "the Super Bowl",
    "the next F1 race",
    "Wimbledon",
    "the World Series",
    "the Tour de France",
    "the NBA playoffs",
    "the Masters",
    "the marathon",
    "the Eurovision final",
)
PLACES = (
    "the Apple Store",
    "the public library",
    "the post office",
    "Costco",
    "the DMV",
    "the museum",
    "the city pool",
    "the farmers market",
    "IKEA",
    "the pharmacy",
    "the Trader Joe's",
    "the bank branch",
    "the zoo",
)
SOFTWARE = (
    "Python",
    "Node.js",
    "Kubernetes",
    "Rust",
    "Ubuntu",
    "Chrome",
    "PostgreSQL",
    "React",
    "Docker",
    "iOS",
    "Android",
    "Firefox",
    "Java",
)
COMPANIES = (
    "Apple",
    "Google",
    "Microsoft",
    "Amazon",
    "Netflix",
    "Nvidia",
    "Tesla",
    "Spotify",
    "Airbnb",
    "Uber",
    "Samsung",
    "Boeing",
)
CURRENCIES = ("dollars", "euros", "pounds", "yen", "rupees", "pesos")
SEARCH_THINGS = (
    "cheap flights from {city} to {city2} next week",
    "reviews of the new {company} phone",
    "the current wait time at {place}",
    "recent news about {company}",
    "concert tickets in {city} this weekend",
    "the latest {software} release notes",
    "events happening in {city} this weekend",
    "restaurants open now near {place}",
    "the return policy on {company}'s website",
    "recent security advisories for {software}",
    "job openings at {company} posted this week",
    "the opening hours of {place} in {city}",
)

SEARCH_TEMPLATES = (
    "What's the latest news on {news}?",
    "Any updates on {news} today?",
    "What happened with {news} this week?",
    "Give me the latest headlines about {news}.",
    "what's going on with {news} right now",
    "Is there any news about {company} today?",
    "What's the weather in {city} {when}?",
    "Will it rain in {city} {when}?",
    "What's the forecast for {city} this weekend?",
    "Is it snowing in {city} right now?",
    "How hot is it in {city} today?",
    "Do I need an umbrella in {city} {when}?",
    "How much is {product} right now?",
    "What's the current price of {asset}?",
    "What is {asset} trading at today?",
    "Is {product} on sale this week?",
    "How did {asset} do today?",
    "Did {team} win last night?",
    "What was the score when {team} played yesterday?",
    "Is {player} playing tonight?",
    "When do {team} play next?",
    "Who is leading {event} right now?",
    "Who won {event} this year?",
    "Did {player} score yesterday?",
    "What time does {place} in {city} close tonight?",
    "Is {place} in {city} open on {day}?",
    "What are the opening hours of {place} in {city} today?",
    "What's on at the cinema in {city} tonight?",
    "When is {event} this year?",
    "Are there delays at the {city} airport right now?",
    "What's the status of flight {flight}?",
    "Are trains running between {city} and {city2} today?",
    "Search for {search}.",
    "Look up {search}.",
    "Find {search}.",
    "Can you search the web for {search}?",
    "Which version of {software} came out most recently?",
    "Did {company} announce anything new today?",
    "What did {company} report in its latest earnings?",
    "What's the exchange rate from {cur} to {cur2} right now?",
    "Is traffic bad on the way into {city} right now?",
    "Has {company} released a new product this month?",
    "Is {software} down right now?",
    "What are people saying about {company} today?",
    "Who is the current CEO of {company}?",
)

LANGS = ("Python", "JavaScript", "Rust", "Go", "Java", "C++", "TypeScript", "Kotlin", "bash", "SQL")
TASKS = (
    "reverses a string",
    "checks if a number is prime",
    "merges two sorted lists",
    "counts the words in a file",
    "parses a CSV file",
    "removes duplicates from a list",
    "validates an email address",
    "computes a moving average",
    "reads a JSON config",
    "sorts a list of records by date",
    "finds the largest value in an array",
    "parses a weather API response",
    "fetches stock prices from an API and caches them",
)
CODE_CONCEPTS = (
    "a closure",
    "recursion",
    "a race condition",
    "dependency injection",
    "a generator",
    "async and await",
    "a null pointer",
    "an interface",
    "memoization",
    "a hash map",
)
ERRORS = (
    "a KeyError",
    "an IndexError",
    "a segmentation fault",
    "a null pointer exception",
    "a stack overflow",
    "a type error",
    "an off-by-one error",
    "a deadlock",
)
PROOFS = (
    "the square root of 2 is irrational",
    "there are infinitely many primes",
    "the sum of two odd numbers is even",
    "the angles of a triangle add up to 180 degrees",
)
FUNCTIONS = ("x^3 + 2x", "sin(x) * cos(x)", "e^(2x)", "ln(x^2 + 1)", "1/x")
TOPICS = (
    "autumn leaves",
    "a rainy day in {city}",
    "the stock market",
    "a football match",
    "the morning news",
    "a long train ride",
    "a lost cat",
    "the ocean",
    "a busy airport",
    "a snowstorm",
    "a first job",
    "coffee",
    "an old bookshop",
    "the weather",
)
PEOPLE = ("my manager", "a client", "my landlord", "the school", "a colleague", "my team")
WORK_THINGS = (
    "a missed deadline",
    "a meeting next week",
    "a refund",
    "a job offer",
    "a project update",
    "the quarterly report",
    "a delayed flight",
)
CONCEPTS = (
    "photosynthesis",
    "compound interest",
    "inflation",
    "a neural network",
    "vaccines",
    "the water cycle",
    "supply and demand",
    "public-key encryption",
    "a black hole",
    "how weather forecasts are made",
    "how stock prices are set",
    "an index fund",
    "how elections are counted",
    "the offside rule in football",
)
PAIRS = (
    ("weather", "climate"),
    ("a stock", "a bond"),
    ("TCP", "UDP"),
    ("a virus", "a bacterium"),
    ("RAM", "storage"),
    ("a list", "a tuple"),
    ("speed", "velocity"),
    ("debit", "credit"),
)
WHY = (
    "is the sky blue",
    "do we have seasons",
    "does ice float",
    "do prices rise over time",
    "do planes fly",
    "does the moon have phases",
    "do leaves change colour",
)
LANGUAGES = ("French", "Spanish", "German", "Italian", "Japanese", "Portuguese", "Dutch")
SENTENCES = (
    "What's the weather like today?",
    "The train to {city} leaves tonight.",
    "Where is the nearest pharmacy?",
    "How much does this cost?",
    "The game starts at eight.",
    "I would like a table for two.",
    "The meeting is moved to Monday.",
    "Please find the invoice attached.",
    "Is the museum open tomorrow?",
    "The news today was surprising.",
)

LOCAL_TEMPLATES = (
    "Write a {lang} function that {task}.",
    "How do I write code that {task} in {lang}?",
    "Explain what {code_concept} is in {lang}.",
    "Why does my {lang} code raise {error}?",
    "Write unit tests for a {lang} function that {task}.",
    "Refactor this {lang} snippet so it is easier to read.",
    "What is {a} times {b}?",
    "What is {a} plus {b}?",
    "Solve for x: {a}x + {b} = {c}.",
    "Convert {n} degrees Fahrenheit to Celsius.",
    "What's {p}% of {n}?",
    "If I buy {k} shares at ${a} and sell them at ${b}, what is my gain?",
    "Prove that {proof}.",
    "What is the derivative of {fn}?",
    "Write a short poem about {topic}.",
    "Draft an email to {person} about {work}.",
    "Write a short story about {topic}.",
    "Give me a catchy title for a blog post about {topic}.",
    "Write a haiku about {topic}.",
    "Rewrite this to sound more formal: {sentence}",
    "Explain {concept}.",
    "Explain how {concept} works.",
    "What is the difference between {x} and {y}?",
    "Explain {concept} to a beginner.",
    "Why {why}?",
    "Translate to {language}: {sentence}",
    "Translate '{sentence}' into {language}.",
    "How do you say '{sentence}' in {language}?",
    "Summarize this: {filler}",
    "Give me a one-sentence summary of this text: {filler}",
    "Proofread this paragraph: {filler}",
)

_SLOT = re.compile(r"\{(\w+)\}")


def _fill(rng: random.Random, template: str, filler: tuple[str, ...]) -> str:
    x, y = rng.choice(PAIRS)
    city, city2 = rng.sample(CITIES, 2)
    cur, cur2 = rng.sample(CURRENCIES, 2)
    values: dict[str, str] = {
        "city": city,
        "city2": city2,
        "when": rng.choice(WHEN),
        "day": rng.choice(DAYS),
        "news": rng.choice(NEWS),
        "product": rng.choice(PRODUCTS),
        "asset": rng.choice(ASSETS),
        "team": rng.choice(TEAMS),
        "player": rng.choice(PLAYERS),
        "event": rng.choice(EVENTS),
        "place": rng.choice(PLACES),
        "software": rng.choice(SOFTWARE),
        "company": rng.choice(COMPANIES),
        "cur": cur,
        "cur2": cur2,
        "search": rng.choice(SEARCH_THINGS),
        "flight": f"{rng.choice('UA BA LH AF DL')}{rng.randint(10, 999)}",
        "lang": rng.choice(LANGS),
        "task": rng.choice(TASKS),
        "code_concept": rng.choice(CODE_CONCEPTS),
        "error": rng.choice(ERRORS),
        "a": str(rng.randint(2, 99)),
        "b": str(rng.randint(2, 99)),
        "c": str(rng.randint(2, 999)),
        "n": str(rng.randint(10, 400)),
        "p": str(rng.choice((5, 10, 15, 20, 25, 40))),
        "k": str(rng.randint(2, 50)),
        "proof": rng.choice(PROOFS),
        "fn": rng.choice(FUNCTIONS),
        "topic": rng.choice(TOPICS),
        "person": rng.choice(PEOPLE),
        "work": rng.choice(WORK_THINGS),
        "concept": rng.choice(CONCEPTS),
        "x": x,
        "y": y,
        "why": rng.choice(WHY),
        "language": rng.choice(LANGUAGES),
        "sentence": rng.choice(SENTENCES),
        "filler": " ".join(rng.sample(filler, k=min(len(filler), 2))),
    }
    # Slot values may hold slots themselves ("the wildfire near {city}"), hence two passes.
    text = template
    for _ in range(2):
        text = _SLOT.sub(lambda m: values[m.group(1)], text)
    return text


def synthetic_question(rng: random.Random, route: str, filler: tuple[str, ...]) -> str:
    """One templated user question for `route` ("search" or "local")."""
    templates = SEARCH_TEMPLATES if route == "search" else LOCAL_TEMPLATES
    return _fill(rng, rng.choice(templates), filler)


def tokenizer_sample(filler: tuple[str, ...], n: int, seed: int) -> list[str]:
    """n filled questions of both routes, so the tokenizer learns the cue words as tokens."""
    rng = random.Random(seed)
    return [synthetic_question(rng, ("local", "search")[i % 2], filler) for i in range(n)]
