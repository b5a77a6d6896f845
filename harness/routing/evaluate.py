"""Running labelled conversations through the router's /v1/route and scoring the answers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import httpx

from harness.routing.corpus import RoutingItem
from harness.routing.metrics import Outcome, RoutingReport, summarize


def route_of(http: httpx.Client, messages: list[dict[str, str]]) -> tuple[str, str]:
    """(route, X-Route-Reason) for one conversation; /v1/route calls no upstream."""
    r = http.post("/v1/route", json={"model": "ai-router", "messages": messages})
    if r.status_code != 200:
        raise AssertionError(f"/v1/route answered {r.status_code}: {r.text[:200]}")
    return r.json()["route"], r.headers.get("X-Route-Reason", "<missing>")


def evaluate(
    http: httpx.Client, items: Iterable[RoutingItem], routes: Sequence[str]
) -> RoutingReport:
    outcomes = []
    for it in items:
        got, reason = route_of(http, list(it.messages))
        outcomes.append(Outcome(it.id, it.route, got, reason))
    return summarize(outcomes, routes)
