from __future__ import annotations

from harness.routing.metrics import Outcome, summarize


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
