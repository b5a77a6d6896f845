"""The words and templates the synthetic routing questions are filled from.

Search templates ask for fresh facts; local templates put the same topics under a task that
knowledge and reasoning answer (translate, write, explain, compute). See synthetic.py.
"""

from __future__ import annotations

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
    "is the sea salty",
    "do we have seasons",
    "does ice float",
    "do prices rise over time",
    "do planes fly",
    "does the moon have phases",
    "do leaves change colour",
)
LANGUAGES = ("French", "Spanish", "German", "Italian", "Japanese", "Portuguese", "Dutch")
SENTENCES = (
    "What's the weather like where you are?",
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
SENTENCES_MORE = (
    "This town is beautiful and the people are friendly.",
    "We're visiting {city} this weekend and the hotel is lovely.",
    "The concert last night was the best one I have seen.",
    "The price of bread went up again this week.",
    "Our flight to {city} was delayed by two hours.",
    "The shop closes early on {day}.",
    "My team won the match on Saturday.",
    "It is raining in {city} and everyone stayed inside.",
)
RECALLED = (
    "baby formula",
    "peanut butter",
    "car seats",
    "a brand of frozen spinach",
    "e-bike batteries",
    "space heaters",
    "the Ford Explorer",
    "a popular toy",
)
COASTS = (
    "Cape Cod",
    "Brighton beach",
    "the Outer Banks",
    "Lake Tahoe",
    "Biarritz",
    "the Gold Coast",
    "Malibu",
    "the Solent",
)
WEATHER_BITS = (
    "wind",
    "UV index",
    "air quality",
    "pollen count",
    "surf",
    "chance of frost",
    "humidity",
    "visibility",
)
MATCHES = (
    "the rugby international",
    "the derby",
    "the cup final",
    "the Ashes test",
    "the grand prix",
    "the title fight",
    "the playoff game",
    "the cricket match",
)
STORES = ("Foyles", "Target", "Best Buy", "Argos", "Home Depot", "John Lewis", "the Apple Store")
ITEMS = (
    "it",
    "the new Switch",
    "that book",
    "the air fryer",
    "the blue jacket in medium",
    "AirPods",
    "the lego set",
)
BUSINESSES = (
    "dentists",
    "bakeries",
    "plumbers",
    "vegan restaurants",
    "bike shops",
    "vets",
    "coworking spaces",
    "hair salons",
)
SKY = ("a comet", "a meteor shower", "the northern lights", "the ISS", "a lunar eclipse")
OPENERS = ("Thanks.", "Great.", "Perfect. Now", "OK, next:", "One more thing:", "Cool.", "Also,")
STRUCTS = ("tuple", "list", "string", "dict", "set", "array", "slice")
ALGOS = ("binary search", "quicksort", "merge sort", "a hash table lookup", "BFS", "heapsort")
TIMES_OF_DAY = ("morning", "evening", "night", "weekend", "winter day")
MOODS = ("cloudy", "rainy", "sunny", "quiet", "busy", "foggy", "snowy")
SHOP_THINGS = ("shirt", "laptop", "bike", "pair of shoes", "sofa", "coat")
AUDIENCES = ("the choir", "new hires", "my team", "volunteers", "a retiring colleague", "runners")
OCCASIONS = ("before the big game", "on their first day", "after a hard week", "for the launch")
FORMATS = ("a clean paragraph", "action items", "a bullet list", "a short summary", "a table")
CLASSES = (
    ("a parking meter", "pay and expire"),
    ("a shopping cart", "add and remove"),
    ("a stack", "push and pop"),
    ("a library loan", "borrow and return"),
    ("a thermostat", "raise and lower"),
)
SYNTAX = ("*args", "**kwargs", "a list comprehension", "the walrus operator", "a lambda", "yield")
