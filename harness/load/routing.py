"""Routing under load: the route each labelled request took against the route its prompt
expects, overall, per expected route and by the requests in flight when it was sent.

The chat users draw their prompts from the labelled routing corpus, and each record carries its
prompt's label (RequestRecord.expected_route). kv-pressure's documents carry none: their text is
unlabelled filler, and the route of a long context is the long-context acceptance tests' to judge
(targets.<t>.long_context_route_check); kv-pressure names its search routes beside its KV verdict.

A route that depends on load is a defect a single-request test never sees, so the accuracy is
also given per number of requests the client had in flight through the router at send time,
counted from the records themselves (each one's send time and end-to-end time), which holds
for a distributed run too.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from typing import Any

from harness.load.records import RequestRecord
from harness.units import percent, points


def in_flight_at_send(records: Sequence[RequestRecord]) -> list[int]:
    """For each record, how many other requests through the router were in flight when it was
    sent: started at or before it and not yet finished."""
    router = [r for r in records if r.target == "router"]
    starts = sorted(r.actual_start for r in router)
    ends = sorted(r.actual_start + (r.e2e_s or 0.0) for r in router)
    out = []
    for r in records:
        if r.target != "router":
            out.append(0)
            continue
        started = bisect.bisect_right(starts, r.actual_start)
        finished = bisect.bisect_right(ends, r.actual_start)
        out.append(max(started - finished - 1, 0))
    return out


def _share(correct: int, total: int) -> float | None:
    return round(correct / total, 4) if total else None


def solo_routes(
    router_url: str,
    api_key: str,
    questions: Mapping[str, str],
    *,
    timeout_s: float = 60.0,
    cache: dict[tuple[str, str], str] | None = None,
) -> dict[str, str]:
    """The route each prompt (key -> question) gets alone: one POST /v1/route at a time, after
    the load, so that nothing else is in flight. A prompt the router does not answer for is
    left out. `cache` keeps answers across the profiles of one session."""
    import httpx

    cache = _SOLO if cache is None else cache
    out: dict[str, str] = {}
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with httpx.Client(base_url=router_url, timeout=timeout_s, headers=headers) as http:
        for key, question in sorted(questions.items()):
            if (router_url, key) not in cache:
                body = {"model": "ai-router", "messages": [{"role": "user", "content": question}]}
                try:
                    r = http.post("/v1/route", json=body)
                except httpx.HTTPError:
                    continue
                route = r.headers.get("X-Route")
                if r.status_code != 200 or not route:
                    continue
                cache[(router_url, key)] = route
            out[key] = cache[(router_url, key)]
    return out


_SOLO: dict[tuple[str, str], str] = {}


def routing_under_load(
    records: Sequence[RequestRecord], solo: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Accuracy of the requests with an expected route and a route header (X-Route), the
    confusion matrix (expected -> got -> count), per expected route, and by requests in flight;
    `unrouted`: labelled requests whose answer carried no route. With `solo` (prompt key -> the
    route that prompt gets alone), `drift` sets each route's accuracy under load beside the
    same requests' accuracy alone: a classifier's own misses count on both sides, so only what
    load changed is left."""
    flights = in_flight_at_send(records)
    confusion: dict[str, dict[str, int]] = {}
    by_flight: dict[int, list[int]] = {}
    unrouted = 0
    for r, flight in zip(records, flights, strict=True):
        if r.target != "router" or not r.expected_route:
            continue
        if not r.route:
            unrouted += 1
            continue
        row = confusion.setdefault(r.expected_route, {})
        row[r.route] = row.get(r.route, 0) + 1
        cell = by_flight.setdefault(flight, [0, 0])
        cell[0] += 1
        cell[1] += r.route == r.expected_route
    per_route: dict[str, dict[str, Any]] = {}
    for e, row in confusion.items():
        n, ok = sum(row.values()), row.get(e, 0)
        per_route[e] = {"requests": n, "correct": ok, "accuracy": _share(ok, n)}
    labelled = sum(v["requests"] for v in per_route.values())
    correct = sum(v["correct"] for v in per_route.values())
    return {
        "labelled": labelled,
        "correct": correct,
        "accuracy": _share(correct, labelled),
        "unrouted": unrouted,
        "drift": None if solo is None else _drift(records, solo),
        "confusion": {e: dict(sorted(row.items())) for e, row in sorted(confusion.items())},
        "per_route": dict(sorted(per_route.items())),
        "by_in_flight": {
            str(n): {"requests": t, "correct": c, "accuracy": _share(c, t)}
            for n, (t, c) in sorted(by_flight.items())
        },
    }


def _drift(records: Sequence[RequestRecord], solo: Mapping[str, str]) -> dict[str, Any]:
    """Per expected route: the requests whose prompt has a solo route, how many of them the
    router routed right alone and under load, the drop between the two, and how many took
    another route under load than alone."""
    per: dict[str, list[int]] = {}
    for r in records:
        if r.target != "router" or not r.expected_route or not r.route:
            continue
        alone = solo.get(r.prompt_key or "")
        if alone is None:
            continue
        cell = per.setdefault(r.expected_route, [0, 0, 0, 0])
        cell[0] += 1
        cell[1] += alone == r.expected_route
        cell[2] += r.route == r.expected_route
        cell[3] += r.route != alone
    out: dict[str, Any] = {}
    for route, (n, alone_ok, load_ok, changed) in sorted(per.items()):
        out[route] = {
            "requests": n,
            "accuracy_alone": _share(alone_ok, n),
            "accuracy_under_load": _share(load_ok, n),
            "drop": round((alone_ok - load_ok) / n, 4),
            "changed_under_load": changed,
        }
    return out


def drift_problem(routing: Mapping[str, Any] | None, max_drop: float, where: str) -> str | None:
    """A sentence when any expected route's accuracy under load is more than `max_drop` below
    the same requests' accuracy with nothing else in flight (`where`: where the margin is set).
    Without solo routes there is nothing to judge: None."""
    drift = (routing or {}).get("drift") or {}
    worse = [
        f"{route}: {percent(v['accuracy_under_load'])} under load against "
        f"{percent(v['accuracy_alone'])} "
        f"alone over {v['requests']} requests ({v['changed_under_load']} routed otherwise than "
        "alone)"
        for route, v in drift.items()
        if v["drop"] > max_drop
    ]
    if not worse:
        return None
    flights = ", ".join(
        f"{n}: {percent(v['accuracy'])} of {v['requests']}"
        for n, v in ((routing or {}).get("by_in_flight") or {}).items()
    )
    return (
        f"routing depends on load: {'; '.join(worse)}, a drop above {points(max_drop)} "
        f"({where}); "
        f"accuracy by requests in flight at send time {{{flights}}}"
    )


def routing_problem(routing: Mapping[str, Any] | None, floor: float, where: str) -> str | None:
    """A sentence when accuracy under load is below `floor` (`where`: where the floor is set);
    None when it holds. No labelled request with a route is a breach: it cannot be judged.
    A single route is not held to the floor on its own: a few dozen requests of one route sit
    within sampling noise of it (the twin's classifier routes about 9 in 10 search prompts of
    the corpus right); what load changes per route is `drift_problem`'s to judge, against the
    same prompts routed alone."""
    if not routing or not routing.get("labelled"):
        unrouted = int((routing or {}).get("unrouted") or 0)
        return (
            f"no request carried both its prompt's expected route and a route header "
            f"({unrouted} labelled requests got no route), so routing accuracy under load "
            f"cannot be judged against the floor {percent(floor)} ({where})"
        )
    low = []
    if routing["accuracy"] < floor:
        low.append(f"{percent(routing['accuracy'])} overall ({routing['correct']} of "
                   f"{routing['labelled']} labelled requests)")  # fmt: skip
    if not low:
        return None
    flights = ", ".join(
        f"{n}: {percent(v['accuracy'])} of {v['requests']}"
        for n, v in routing["by_in_flight"].items()
    )
    return (
        f"routing accuracy under load {'; '.join(low)} is below the floor {percent(floor)} "
        f"({where}); "
        f"accuracy by requests in flight at send time {{{flights}}}"
    )
