"""Routing accuracy: confusion matrix, per-route precision and recall, `either` reported apart."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.units import percent


@dataclass(frozen=True)
class Outcome:
    id: str
    expected: str  # a route, or "either"
    got: str
    reason: str


@dataclass(frozen=True)
class RoutingReport:
    routes: tuple[str, ...]
    scored: int
    correct: int
    confusion: dict[str, dict[str, int]]  # expected -> got -> count
    either: dict[str, int]  # got -> count, for ambiguous items
    fallbacks: int  # outcomes the classifier did not decide ("classified" or "classified:...")
    misses: tuple[Outcome, ...]

    @property
    def accuracy(self) -> float:
        return self.correct / self.scored if self.scored else 0.0

    def precision(self, route: str) -> float:
        predicted = sum(self.confusion[e].get(route, 0) for e in self.routes)
        return self.confusion[route].get(route, 0) / predicted if predicted else 0.0

    def recall(self, route: str) -> float:
        actual = sum(self.confusion[route].values())
        return self.confusion[route].get(route, 0) / actual if actual else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "scored": self.scored,
            "correct": self.correct,
            "accuracy": round(self.accuracy, 4),
            "per_route": {
                r: {"precision": round(self.precision(r), 4), "recall": round(self.recall(r), 4)}
                for r in self.routes
            },
            "confusion": self.confusion,
            "either": self.either,
            "fallbacks": self.fallbacks,
            "misses": [o.__dict__ for o in self.misses[:50]],
        }


def summarize(outcomes: Iterable[Outcome], routes: Sequence[str]) -> RoutingReport:
    outcomes = list(outcomes)
    confusion = {e: {g: 0 for g in (*routes, "other")} for e in routes}
    either: Counter[str] = Counter()
    correct = 0
    misses = []
    for o in outcomes:
        if o.expected not in routes:
            either[o.got] += 1
            continue
        col = o.got if o.got in routes else "other"
        confusion[o.expected][col] += 1
        if o.got == o.expected:
            correct += 1
        else:
            misses.append(o)
    return RoutingReport(
        routes=tuple(routes),
        scored=sum(sum(row.values()) for row in confusion.values()),
        correct=correct,
        confusion=confusion,
        either=dict(either),
        fallbacks=sum(not o.reason.startswith("classified") for o in outcomes),
        misses=tuple(misses),
    )


SHOWN_MISSES = 5  # misrouted items a failure names; the record holds up to 50


def acceptance_problems(report: RoutingReport, floor: float) -> list[str]:
    """Why the routing acceptance check fails, or [] when it passes: any fallback (the router
    answered without a classification), accuracy under the floor, a route never chosen."""
    problems = []
    if report.fallbacks:
        problems.append(
            f"{report.fallbacks} of {report.scored + sum(report.either.values())} requests fell "
            "back instead of being classified"
        )
    if report.accuracy < floor:
        shown = report.misses[:SHOWN_MISSES]
        misses = ", ".join(f"{o.id} expected {o.expected} got {o.got}" for o in shown)
        more = len(report.misses) - len(shown)
        problems.append(
            f"routing accuracy {percent(report.accuracy)} ({report.correct} of {report.scored} "
            f"items) is below the floor {percent(floor)}; misrouted: {misses}"
            + (f" and {more} more" if more else "")
        )
    problems += [f"the router never routes {r!r}" for r in report.routes if report.recall(r) == 0]
    return problems


def below_floor_advice(target: str, accuracy: float) -> str:
    """What to change when a real classifier (gpu, attach) measures under the target's floor:
    the prompt it classifies with, or the floor, which was set before it was measured."""
    env = f"HARNESS_TARGETS_{target.upper().replace('-', '_')}_ROUTING_ACCURACY_FLOOR"
    return (
        f"to raise the accuracy, change the classifier prompt (CLASSIFY_SYSTEM_PROMPT in "
        f"infra/ai-router/ai_router/classify_prompt.py; then rebuild the ai-router image, and "
        f"`harness twin build`, whose classifier learns that prompt) and rerun; "
        f"to accept the measured {percent(accuracy)} as this classifier's level, lower "
        f"[targets.{target}] routing_accuracy_floor in harness.toml (or {env}); "
        f"every miss is in the run record's acceptance.routing"
    )
