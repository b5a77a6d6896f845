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


def routing_under_load(records: Sequence[RequestRecord]) -> dict[str, Any]:
    """Accuracy of the requests with an expected route and a route header (X-Route), the
    confusion matrix (expected -> got -> count), per expected route, and by requests in flight;
    `unrouted`: labelled requests whose answer carried no route."""
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
        "confusion": {e: dict(sorted(row.items())) for e, row in sorted(confusion.items())},
        "per_route": dict(sorted(per_route.items())),
        "by_in_flight": {
            str(n): {"requests": t, "correct": c, "accuracy": _share(c, t)}
            for n, (t, c) in sorted(by_flight.items())
        },
    }


def routing_problem(routing: Mapping[str, Any] | None, floor: float, where: str) -> str | None:
    """A sentence when accuracy under load, overall or of any expected route, is below `floor`
    (`where`: where the floor is set); None when it holds. The corpus mixes the routes about
    evenly, so a route's misses are diluted in the overall share: each route is held to the floor
    on its own too. No labelled request with a route is a breach: it cannot be judged."""
    if not routing or not routing.get("labelled"):
        unrouted = int((routing or {}).get("unrouted") or 0)
        return (
            f"no request carried both its prompt's expected route and a route header "
            f"({unrouted} labelled requests got no route), so routing accuracy under load "
            f"cannot be judged against the floor {floor:g} ({where})"
        )
    low = []
    if routing["accuracy"] < floor:
        low.append(f"{routing['accuracy']:.3f} overall ({routing['correct']} of "
                   f"{routing['labelled']} labelled requests)")  # fmt: skip
    for route, v in routing["per_route"].items():
        if v["accuracy"] < floor:
            wrong = {g: n for g, n in routing["confusion"][route].items() if g != route}
            went = ", ".join(f"{n} went {g}" for g, n in sorted(wrong.items()))
            low.append(f"{v['accuracy']:.3f} for {route} ({v['correct']} of {v['requests']} "
                       f"{route}-labelled requests; {went})")  # fmt: skip
    if not low:
        return None
    flights = ", ".join(
        f"{n}: {v['accuracy']:.3f} of {v['requests']}" for n, v in routing["by_in_flight"].items()
    )
    return (
        f"routing accuracy under load {'; '.join(low)} is below the floor {floor:g} ({where}); "
        f"accuracy by requests in flight at send time {{{flights}}}"
    )
