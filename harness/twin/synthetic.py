"""Templated routing questions that widen the classifier's training data.

The routing corpus has a few hundred questions; a model trained from scratch on them alone
memorises them and misroutes unseen phrasings. These templates, written for this project from
the router's own route definitions (fresh facts → search; knowledge and reasoning → local),
teach the cue words; the templates are in synthetic_templates.py, their words in
synthetic_vocab.py. Local templates deliberately reuse search topics (weather, prices, news)
under a local task (translate, write, explain, compute), and search templates reuse local topics
(programming languages) under a fresh-facts question, so that the task decides, not the topic.
"""

from __future__ import annotations

import random
import re

from harness.twin.synthetic_templates import LOCAL_TEMPLATES, SEARCH_TEMPLATES
from harness.twin.synthetic_vocab import (
    ALGOS,
    ASSETS,
    AUDIENCES,
    BUSINESSES,
    CITIES,
    CLASSES,
    COASTS,
    CODE_CONCEPTS,
    COMPANIES,
    CONCEPTS,
    CURRENCIES,
    DAYS,
    ERRORS,
    EVENTS,
    FORMATS,
    FUNCTIONS,
    ITEMS,
    LANGS,
    LANGUAGES,
    MATCHES,
    MOODS,
    NEWS,
    OCCASIONS,
    OPENERS,
    PAIRS,
    PEOPLE,
    PLACES,
    PLAYERS,
    PRODUCTS,
    PROOFS,
    RECALLED,
    SEARCH_THINGS,
    SENTENCES,
    SENTENCES_MORE,
    SHOP_THINGS,
    SKY,
    SOFTWARE,
    STORES,
    STRUCTS,
    SYNTAX,
    TASKS,
    TEAMS,
    TIMES_OF_DAY,
    TOPICS,
    WEATHER_BITS,
    WHEN,
    WHY,
    WORK_THINGS,
)

_SLOT = re.compile(r"\{(\w+)\}")


def _fill(rng: random.Random, template: str, filler: tuple[str, ...]) -> str:
    x, y = rng.choice(PAIRS)
    cls, methods = rng.choice(CLASSES)
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
        "sentence2": rng.choice(SENTENCES_MORE),
        "recalled": rng.choice(RECALLED),
        "coast": rng.choice(COASTS),
        "weather_bit": rng.choice(WEATHER_BITS),
        "match": rng.choice(MATCHES),
        "store": rng.choice(STORES),
        "item": rng.choice(ITEMS),
        "business": rng.choice(BUSINESSES),
        "sky": rng.choice(SKY),
        "struct": rng.choice(STRUCTS),
        "algo": rng.choice(ALGOS),
        "tod": rng.choice(TIMES_OF_DAY),
        "mood": rng.choice(MOODS),
        "shop_thing": rng.choice(SHOP_THINGS),
        "audience": rng.choice(AUDIENCES),
        "occasion": rng.choice(OCCASIONS),
        "format": rng.choice(FORMATS),
        "cls": cls,
        "methods": methods,
        "syntax": rng.choice(SYNTAX),
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


def restyle(rng: random.Random, text: str, opener: float, lower: float, bare: float) -> str:
    """`text` as people also type it: after a conversational opener ("Thanks.", "Perfect. Now"),
    all lower case, or without its closing punctuation, each with the given probability."""
    if rng.random() < opener and text:
        lead = rng.choice(OPENERS)
        body = text if lead.endswith(".") else text[0].lower() + text[1:]
        text = f"{lead} {body}"
    if rng.random() < lower:
        text = text.lower()
    if rng.random() < bare:
        text = text.rstrip("?.!")
    return text


def tokenizer_sample(filler: tuple[str, ...], n: int, seed: int) -> list[str]:
    """n filled questions of both routes, so the tokenizer learns the cue words as tokens."""
    rng = random.Random(seed)
    return [synthetic_question(rng, ("local", "search")[i % 2], filler) for i in range(n)]
