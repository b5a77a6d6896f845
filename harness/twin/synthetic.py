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

from harness.twin.synthetic_vocab import (
    ASSETS,
    CITIES,
    CODE_CONCEPTS,
    COMPANIES,
    CONCEPTS,
    CURRENCIES,
    DAYS,
    ERRORS,
    EVENTS,
    FUNCTIONS,
    LANGS,
    LANGUAGES,
    LOCAL_TEMPLATES,
    NEWS,
    PAIRS,
    PEOPLE,
    PLACES,
    PLAYERS,
    PRODUCTS,
    PROOFS,
    SEARCH_TEMPLATES,
    SEARCH_THINGS,
    SENTENCES,
    SOFTWARE,
    TASKS,
    TEAMS,
    TOPICS,
    WHEN,
    WHY,
    WORK_THINGS,
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
