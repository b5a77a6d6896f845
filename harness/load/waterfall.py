"""Where the client's time to first token goes, per route: the ai-router's Server-Timing parts
joined with the engines' exact TTFT means, set against the client's own mean TTFT.

Each part is a mean over the same requests (a route's answered ones that carried the header),
measured by whoever owns that stretch:
- router: the router's total (request in hand to response head out) minus its other parts,
  its own work: parsing, the conversation's shape, building the upstream request;
- classifier: Server-Timing classify, the routing decision;
- upstream connect: Server-Timing upstream_connect;
- upstream first byte: Server-Timing upstream_ttfb. Where the engine behind the route has an
  exact TTFT mean over the run (`vllm:time_to_first_token_seconds` _sum/_count from /metrics),
  it splits into the engine's first token and the rest, `engine HTTP server` (its API server's
  parsing, templating and tokenizing before the engine has the request, and the way back).
The parts nest inside the router's total, so they add up to its mean; what the client's mean
TTFT holds beyond them is outside every clock here: the client's sending and reading, the
network, and the HTTP server's accept and parsing before the router's code runs. The parts
should hold the client's mean within TOLERANCE; a route where they do not says by how much
("parts add up to 91 % of the client's mean TTFT").

A proxy in front of the router (traefik, where the stack runs one) is one more part: its own
time per request, traefik's access-log `Overhead`, joined to each record by the
X-Harness-Request header the access log keeps. Overhead is traefik's duration less the time its
proxy spent on the request to the ai-router (connecting, forwarding, copying the answer back):
its routing and middlewares, before the request went on and after the answer ended, so at most
what it added to the first token. The proxying itself and the extra network hop stay outside
every clock here.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.load.records import RequestRecord
from harness.load.server_timing import CLASSIFY, CONNECT, TOTAL, TTFB
from harness.load.stats import TTFT
from harness.stack.base import Stack
from harness.stack.ingress import ACCESS_LOG_REQUEST_ID, access_log_path
from harness.telemetry.sampler import Sampler

TOLERANCE = 0.05
NO_INGRESS = "not in this target's path"


@dataclass(frozen=True)
class Part:
    name: str
    ms: float  # mean over the route's requests
    source: str  # who measured it


@dataclass(frozen=True)
class EngineTtft:
    """An engine's exact TTFT mean over the run's window, and how many first tokens it timed."""

    engine: str
    mean_ms: float
    requests: float


@dataclass(frozen=True)
class RouteWaterfall:
    route: str
    requests: int  # answered requests of the route that carried Server-Timing
    client_ttft_ms: float  # their mean TTFT as the client measured it
    parts: tuple[Part, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def parts_ms(self) -> float:
        return sum(p.ms for p in self.parts)

    @property
    def share(self) -> float | None:
        """The parts' sum over the client's mean TTFT."""
        return self.parts_ms / self.client_ttft_ms if self.client_ttft_ms > 0 else None

    @property
    def adds_up(self) -> bool:
        share = self.share
        return share is not None and abs(share - 1.0) <= TOLERANCE

    def sentence(self) -> str:
        share = self.share
        said = "n/a" if share is None else f"{share * 100:.0f} %"
        within = "within" if self.adds_up else "NOT within"
        return (
            f"{self.route}: parts add up to {said} of the client's mean TTFT "
            f"({self.parts_ms:.1f} of {self.client_ttft_ms:.1f} ms, {self.requests} requests; "
            f"{within} {TOLERANCE * 100:.0f} %)"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "client_ttft_mean_ms": self.client_ttft_ms,
            "parts": [{"name": p.name, "ms": p.ms, "source": p.source} for p in self.parts],
            "parts_ms": self.parts_ms,
            "unaccounted_ms": self.client_ttft_ms - self.parts_ms,
            "share": self.share,
            "adds_up": self.adds_up,
            "sentence": self.sentence(),
            "notes": list(self.notes),
        }


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else 0.0


def route_waterfall(
    route: str,
    records: Sequence[RequestRecord],
    engine: EngineTtft | None = None,
    ingress_ms: float | None = None,
) -> RouteWaterfall | None:
    """`records`: the route's requests through the router; `engine`: the TTFT of the engine
    behind the route; `ingress_ms`: the mean own time of a proxy in front of the router. None
    when none of the route's answered requests carried Server-Timing."""
    timed = [r for r in records if r.ok and r.ttft_s is not None and r.server_timing]
    if not timed:
        return None
    notes: list[str] = []

    def mean(name: str) -> float:
        return _mean([(r.server_timing or {}).get(name, 0.0) for r in timed])

    total, classify, connect, ttfb = mean(TOTAL), mean(CLASSIFY), mean(CONNECT), mean(TTFB)
    parts: list[Part] = []
    if ingress_ms is not None:
        parts.append(Part("traefik", ingress_ms, "traefik access log Overhead"))
    parts += [
        Part("router", total - classify - connect - ttfb, "Server-Timing total - its parts"),
        Part("classifier", classify, "Server-Timing classify"),
        Part("upstream connect", connect, "Server-Timing upstream_connect"),
    ]
    if engine is not None and engine.requests > 0:
        engine_name = engine.engine
        parts += [
            Part(
                "engine HTTP server",
                ttfb - engine.mean_ms,
                f"Server-Timing upstream_ttfb - {engine_name} TTFT mean",
            ),
            Part("engine first token", engine.mean_ms, f"{engine_name} /metrics {TTFT} mean"),
        ]
        if engine.requests != len(timed):
            notes.append(
                f"{engine_name} timed {engine.requests:.0f} first tokens over the run, the "
                f"client {len(timed)} answers with Server-Timing"
            )
        if ttfb < engine.mean_ms:
            notes.append(
                f"the router's first-byte mean {ttfb:.1f} ms is below {engine_name}'s TTFT "
                f"mean {engine.mean_ms:.1f} ms: they did not time the same requests"
            )
    else:
        parts.append(Part("upstream first byte", ttfb, "Server-Timing upstream_ttfb"))
    untimed = sum(1 for r in records if r.ok and r.ttft_s is not None and not r.server_timing)
    if untimed:
        notes.append(f"{untimed} answers carried no Server-Timing and are left out")
    client = _mean([(r.ttft_s or 0.0) * 1000 for r in timed])
    return RouteWaterfall(route, len(timed), client, tuple(parts), tuple(notes))


def waterfall(
    records: Sequence[RequestRecord],
    engines: Mapping[str, EngineTtft],
    *,
    classifier: EngineTtft | None = None,
    ingress_ms: Mapping[str, float] | None = None,
    ingress: str = NO_INGRESS,
) -> dict[str, Any]:
    """Every route of the requests through the router. `engines`: the exact TTFT of the engine
    behind a route, by route (search goes to xAI, which has none). `classifier`: the classifier
    engine's, shown beside the classifier part (it answers every route's classification, so it
    is not split per route). `ingress_ms`: a proxy's mean own time per route, where one is in
    the path and timed; `ingress`: what the record says of the proxy."""
    routed = [r for r in records if r.target == "router" and r.route]
    routes: dict[str, Any] = {}
    problems: list[str] = []
    for route in sorted({r.route for r in routed if r.route}):
        found = route_waterfall(
            route,
            [r for r in routed if r.route == route],
            engines.get(route),
            None if ingress_ms is None else ingress_ms.get(route),
        )
        if found is None:
            continue
        routes[route] = found.as_dict()
        if not found.adds_up:
            problems.append(found.sentence())
    return {
        "tolerance": TOLERANCE,
        "ingress": ingress,
        "routes": routes,
        "classifier_engine": None
        if classifier is None
        else {
            "engine": classifier.engine,
            "ttft_mean_ms": classifier.mean_ms,
            "requests": classifier.requests,
        },
        "problems": problems,
    }


def engine_ttft(sampler: Sampler, engine: str) -> EngineTtft | None:
    """`engine`'s exact TTFT mean over the sampled window; None where it timed none."""
    total, count = sampler.counter_window(engine, TTFT)
    return EngineTtft(engine, total / count * 1000, count) if count > 0 else None


def proxy_overhead_ms(
    access_log: Path, records: Sequence[RequestRecord]
) -> tuple[dict[str, float], int]:
    """Per route, the mean access-log Overhead of the proxy over the answered records that a
    line of `access_log` names, and how many such records no line names."""
    own: dict[str, float] = {}
    for line in access_log.read_text().splitlines() if access_log.is_file() else []:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short
        rid, overhead = entry.get(ACCESS_LOG_REQUEST_ID), entry.get("Overhead")
        if isinstance(rid, str) and isinstance(overhead, int | float):
            own[rid] = overhead / 1e6  # ns
    by_route: dict[str, list[float]] = {}
    missing = 0
    for r in records:
        if r.target != "router" or not r.route or not r.ok or not r.server_timing:
            continue
        if r.request_id in own:
            by_route.setdefault(r.route, []).append(own[r.request_id])
        else:
            missing += 1
    return {route: statistics.fmean(v) for route, v in by_route.items()}, missing


def run_waterfall(
    records: Sequence[RequestRecord], sampler: Sampler, stack: Stack
) -> dict[str, Any]:
    """The waterfall of a load run: the engines' TTFT from its sampler's window, and the
    proxy's own time from its access log where the clients entered through one."""
    local = engine_ttft(sampler, stack.primary.name)
    entry = stack.entry
    ingress_ms: dict[str, float] | None = None
    said = NO_INGRESS
    if entry.role == "proxy":
        said = f"in the path, not timed: no access log of {entry.name}"
        if entry.log_path is not None:
            path = access_log_path(entry.log_path, entry.name)
            found, missing = proxy_overhead_ms(path, records)
            if found and not missing:
                ingress_ms, said = found, "timed by its access log's Overhead"
            else:
                said = (
                    f"in the path, not timed: {missing} answers have no line in {path.name}"
                    if found
                    else f"in the path, not timed: no line of {path.name} names a request"
                )
    return waterfall(
        records,
        {} if local is None else {"local": local},
        classifier=engine_ttft(sampler, stack.classifier.name),
        ingress_ms=ingress_ms,
        ingress=said,
    )
