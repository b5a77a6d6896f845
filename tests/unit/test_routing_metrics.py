from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.config import Settings
from harness.routing.metrics import Outcome, acceptance_problems, below_floor_advice, summarize


def test_confusion_precision_recall_and_either_apart() -> None:
    outcomes = [
        Outcome("1", "local", "local", "classified"),
        Outcome("2", "local", "search", "classified"),
        Outcome("3", "search", "search", "classified"),
        Outcome("4", "search", "search", "classified"),
        Outcome("5", "either", "local", "classified"),
        Outcome("6", "search", "local", "fallback:timeout"),
    ]
    r = summarize(outcomes, ("local", "search"))
    assert r.scored == 5 and r.correct == 3
    assert r.accuracy == 0.6
    assert r.confusion["local"] == {"local": 1, "search": 1, "other": 0}
    assert r.precision("search") == 2 / 3
    assert r.recall("search") == 2 / 3
    assert r.either == {"local": 1}
    assert r.fallbacks == 1
    assert [m.id for m in r.misses] == ["2", "6"]
    assert r.to_dict()["per_route"]["local"]["recall"] == 0.5


def test_a_miss_of_the_floor_says_what_was_measured() -> None:
    outcomes = [Outcome(str(i), "local", "local", "classified") for i in range(6)]
    outcomes += [Outcome(f"s{i}", "search", "local", "classified") for i in range(14)]
    outcomes += [Outcome(f"t{i}", "search", "search", "classified") for i in range(2)]
    (problem,) = acceptance_problems(summarize(outcomes, ("local", "search")), 0.9)
    assert problem.startswith("routing accuracy 36.4 % (8 of 22 items) is below the floor 90 %")
    assert "misrouted: s0 expected search got local" in problem
    assert "s4 expected search got local and 9 more" in problem and "s5" not in problem


def test_the_advice_names_the_prompt_and_the_targets_floor() -> None:
    advice = below_floor_advice("gpu", 0.8123)
    assert "CLASSIFY_SYSTEM_PROMPT in infra/ai-router/ai_router/classify_prompt.py" in advice
    assert "[targets.gpu] routing_accuracy_floor in harness.toml" in advice
    assert "HARNESS_TARGETS_GPU_ROUTING_ACCURACY_FLOOR" in advice
    assert "the measured 81.2 % as" in advice


class _Record:
    def put(self, *keys: Any) -> None:
        pass


def router_answering(route: str) -> httpx.Client:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"route": route}, headers={"X-Route-Reason": "classified"})

    return httpx.Client(base_url="http://router", transport=httpx.MockTransport(handle))


@pytest.mark.parametrize("target", ["gpu", "attach", "twin"])
def test_the_acceptance_failure_says_what_to_change_on_a_real_classifier(target: str) -> None:
    path = Path(__file__).resolve().parents[2] / "tests" / "acceptance" / "test_routing.py"
    spec = importlib.util.spec_from_file_location("_routing_acceptance", path)
    assert spec is not None and spec.loader is not None
    routing = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(routing)
    settings = Settings(path=None, environ={})
    with pytest.raises(AssertionError) as failed:
        routing.test_eval_split_accuracy_meets_the_floor(
            router_answering("local"), _Record(), settings, target
        )
    text = str(failed.value)
    assert "is below the floor 90 %" in text and "misrouted:" in text
    # The twin's classifier is the harness's own build: its prompt and floor are not the fix.
    assert ("CLASSIFY_SYSTEM_PROMPT" in text) is (target != "twin")
    assert (f"[targets.{target}] routing_accuracy_floor" in text) is (target != "twin")
