"""Routing correctness: the eval split through the router, scored; determinism."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from harness.routing_metrics import Outcome, summarize
from harness.twin.corpus import ROUTING_EVAL, load_routing

ROUTES = ("local", "search")


def route_of(http: httpx.Client, messages: list[dict[str, str]]) -> tuple[str, str]:
    r = http.post("/v1/route", json={"model": "ai-router", "messages": messages})
    assert r.status_code == 200, f"/v1/route answered {r.status_code}: {r.text[:200]}"
    return r.json()["route"], r.headers["X-Route-Reason"]


def test_eval_split_accuracy_meets_the_floor(
    router_http: httpx.Client, run_record: Any, harness_settings: Any, harness_target: str
) -> None:
    items = load_routing(ROUTING_EVAL)
    outcomes = []
    for it in items:
        got, reason = route_of(router_http, list(it.messages))
        outcomes.append(Outcome(it.id, it.route, got, reason))
    report = summarize(outcomes, ROUTES)
    run_record.put("acceptance", "routing", report.to_dict())
    floor = harness_settings.get(f"targets.{harness_target}.routing_accuracy_floor", float, 0.95)
    print(
        f"routing accuracy {report.accuracy:.3f} on {report.scored} items (floor {floor}); "
        + ", ".join(f"{r}: P={report.precision(r):.2f} R={report.recall(r):.2f}" for r in ROUTES)
        + f"; either split {report.either}; fallbacks {report.fallbacks}"
    )
    assert report.fallbacks == 0, f"{report.fallbacks} requests fell back instead of classifying"
    misses = ", ".join(f"{o.id} expected {o.expected} got {o.got}" for o in report.misses[:10])
    assert report.accuracy >= floor, (
        f"routing accuracy {report.accuracy:.3f} is below the floor {floor}: {misses}"
    )
    for route in ROUTES:
        assert report.recall(route) > 0, f"the router never routes {route!r}"


def test_same_prompt_same_route_every_time(router_http: httpx.Client, run_record: Any) -> None:
    items = [it for it in load_routing(ROUTING_EVAL) if it.route in ROUTES][:20]
    unstable = {}
    for it in items:
        seen = {route_of(router_http, list(it.messages))[0] for _ in range(5)}
        if len(seen) > 1:
            unstable[it.id] = sorted(seen)
    run_record.put(
        "acceptance", "determinism", {"prompts": len(items), "repeats": 5, "unstable": unstable}
    )
    assert not unstable, f"routes changed between identical requests: {unstable}"


@pytest.mark.parametrize("route", ROUTES)
def test_full_request_follows_the_classified_route(router_http: httpx.Client, route: str) -> None:
    item = next(it for it in load_routing(ROUTING_EVAL) if it.route == route)
    body = {"model": "ai-router", "messages": list(item.messages), "max_tokens": 16}
    r = router_http.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text[:300]
    assert r.headers["X-Route"] == route
    assert r.headers["X-Route-Reason"] == "classified"
    assert int(r.headers["X-Classifier-Ms"]) >= 0
