"""The templated training questions: every slot filled, deterministic, never an eval question."""

from __future__ import annotations

import random

from harness.routing import corpus
from harness.twin import synthetic
from harness.twin.synthetic_templates import LOCAL_TEMPLATES, SEARCH_TEMPLATES

FILLER = tuple(corpus.load_filler(corpus.FILLER_TEXT))


def test_every_template_fills_every_slot() -> None:
    rng = random.Random(3)
    for templates in (SEARCH_TEMPLATES, LOCAL_TEMPLATES):
        for template in templates:
            for _ in range(20):
                text = synthetic._fill(rng, template, FILLER)
                assert "{" not in text and "}" not in text, (template, text)
                assert text.strip() == text and text, template


def test_questions_are_deterministic_per_seed() -> None:
    def draw(seed: int) -> list[str]:
        rng = random.Random(seed)
        return [synthetic.synthetic_question(rng, r, FILLER) for r in ("search", "local") * 50]

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)


def test_no_template_reproduces_a_held_out_question() -> None:
    # The eval split measures generalisation: a template that can produce one of its questions
    # verbatim would leak it into training.
    held_out = {
        " ".join(it.question.lower().rstrip("?.!").split())
        for it in corpus.load_routing(corpus.ROUTING_EVAL)
    }
    rng = random.Random(11)
    for route in ("search", "local"):
        for _ in range(20000):
            text = synthetic.synthetic_question(rng, route, FILLER)
            assert " ".join(text.lower().rstrip("?.!").split()) not in held_out, text


def test_restyle_only_changes_form() -> None:
    rng = random.Random(5)
    text = "What's the weather in Oslo today?"
    assert synthetic.restyle(rng, text, 0.0, 0.0, 0.0) == text
    assert synthetic.restyle(rng, text, 0.0, 1.0, 1.0) == "what's the weather in oslo today"
    opened = synthetic.restyle(rng, text, 1.0, 0.0, 0.0)
    assert opened.endswith("hat's the weather in Oslo today?")
    leads = {o.split()[0] for o in synthetic.OPENERS}
    assert opened.split()[0] in leads
