"""The capacity search: the highest sustained arrival rate at which goodput holds.

Each probe is one fixed open-loop arrival rate for a bounded time (harness.load.probe runs one
against a stack; here a probe is any function rate -> ProbeResult, so the search is tested
against a simulated stack). A probe holds when its client kept its schedule (valid), the share
of requests within every latency objective of their route is at least the goodput share, and
the stack was not over-saturated (harness.load.saturation).

The search brackets the knee: it starts low and grows the rate geometrically until a probe
fails (or, when the first one fails, shrinks it until one holds), then bisects geometrically
until the bracket is narrow or the probe budget is spent. It keeps back `repeats` probes for
the rates nearest the knee: the first failure is repeated at once (a transient, such as another
process busy on the machine, must not cap the whole search: held on its repeat, the rate counts
as held and the growth goes on), the rest repeat the highest rate that held, then the lowest
that failed, at the end. An over-saturated probe fails whatever its goodput, so the search
never grows past it.

The answer (`knee`): the interval runs from the highest rate that held in every trial to the
lowest rate above it that failed in every trial; rates with mixed trials lie inside it. The
capacity is where the mean goodput share crosses the required share, interpolated between the
highest rate that held and the next probed rate, or that rate itself when the next one failed
for another reason (over-saturation, a client that fell behind).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.errors import InputError
from harness.load.saturation import COMPUTE, NOT_REACHED


@dataclass(frozen=True)
class ProbeResult:
    rate_rps: float  # the arrival rate asked for
    goodput_share: float | None  # good requests / requests; None when none was sent
    valid: bool  # the client kept its schedule
    requests: int = 0
    ttft_p95_s: float | None = None
    waiting_max: float = 0.0  # most requests waiting at once at any engine
    over_saturated: str | None = None
    invalid_reason: str | None = None
    output_tokens_per_request: float | None = None  # of the successful requests
    offered_rps: float | None = None  # requests sent / the arrival window
    resource: tuple[str, str] | None = None  # (limiting resource, why) from its /metrics
    directory: str | None = None  # where the probe's files are
    extra: dict[str, Any] = field(default_factory=dict)

    def holds(self, share: float) -> bool:
        return (
            self.valid
            and self.over_saturated is None
            and self.goodput_share is not None
            and self.goodput_share >= share
        )


@dataclass(frozen=True)
class SearchPlan:
    start_rps: float = 1.0
    growth: float = 2.0
    max_probes: int = 8
    repeats: int = 2
    resolution: float = 0.15  # bisect while upper / lower > 1 + resolution
    goodput_share: float = 0.95
    min_rps: float = 0.05  # a first probe that fails is shrunk no lower than this

    def check(self) -> None:
        """InputError naming the wrong value, before anything starts."""
        problems = []
        if self.max_probes < 1:
            problems.append(f"--max-probes {self.max_probes}: the search needs at least 1 probe")
        if not self.start_rps > 0:
            problems.append(f"start rate {self.start_rps:g} req/s: must be above 0")
        if not self.growth > 1:
            problems.append(f"growth {self.growth:g}: must be above 1 (e.g. 2, doubling)")
        if self.repeats < 0:
            problems.append(f"repeats {self.repeats}: must be 0 or more")
        if not self.resolution > 0:
            problems.append(f"resolution {self.resolution:g}: must be above 0 (e.g. 0.15)")
        if not 0 < self.goodput_share <= 1:
            problems.append(f"goodput share {self.goodput_share:g}: must be in (0, 1]")
        if not 0 < self.min_rps <= self.start_rps:
            problems.append(
                f"min rate {self.min_rps:g} req/s: must be above 0 and at most the start rate"
            )
        if problems:
            raise InputError("capacity search: " + "; ".join(problems))


@dataclass(frozen=True)
class Knee:
    capacity_rps: float
    lower_rps: float
    upper_rps: float | None  # None: no probe failed, the capacity is at least lower_rps
    capacity_tok_s: float | None
    lower_tok_s: float | None
    upper_tok_s: float | None
    resource: str
    resource_why: str


@dataclass(frozen=True)
class SearchResult:
    probes: list[tuple[str, ProbeResult]]  # (phase: grow, shrink, bisect, repeat; result)
    knee: Knee
    stopped: str  # why the search ended


def search(
    probe: Callable[[float], ProbeResult],
    plan: SearchPlan,
    on_probe: Callable[[int, str, ProbeResult], None] | None = None,
) -> SearchResult:
    """Bracket, bisect and repeat, at most plan.max_probes probes (see the module docstring)."""
    plan.check()
    share = plan.goodput_share
    done: list[tuple[str, ProbeResult]] = []
    # Probes kept back for repeats; the first failure draws one of them at once.
    repeats = min(plan.repeats, max(0, plan.max_probes - 3))

    def run(rate: float, phase: str) -> ProbeResult:
        r = probe(rate)
        done.append((phase, r))
        if on_probe is not None:
            on_probe(len(done), phase, r)
        return r

    def budget() -> int:
        return plan.max_probes - repeats

    lo: float | None = None  # highest rate that held
    hi: float | None = None  # lowest rate that failed
    stops: list[str] = []
    confirmed = False
    while len(done) < budget() and (lo is None or hi is None):
        if lo is None and hi is None:
            rate, phase = plan.start_rps, "grow"
        elif hi is None:
            assert lo is not None
            rate, phase = lo * plan.growth, "grow"
        else:
            rate, phase = hi / plan.growth, "shrink"
        if rate < plan.min_rps:
            stops.append(f"no probe held down to {plan.min_rps:g} req/s")
            break
        r = run(rate, phase)
        if not r.holds(share) and not confirmed and repeats > 0:
            # The first failure is repeated at once: a transient (another process on the
            # machine, one slow burst of arrivals) must not cap the whole search. Held once of
            # twice, the rate counts as held here and lies inside the interval (knee).
            confirmed, repeats = True, repeats - 1
            r = run(rate, "repeat")
        if r.holds(share):
            lo = rate if lo is None else max(lo, rate)
        else:
            hi = rate if hi is None else min(hi, rate)
            if r.over_saturated and phase == "grow":
                stops.append(f"growth stopped at {rate:.3g} req/s, over-saturated")

    def wide() -> bool:
        return lo is not None and hi is not None and hi / lo > 1 + plan.resolution

    while wide() and len(done) < budget():
        assert lo is not None and hi is not None
        mid = math.sqrt(lo * hi)
        if run(mid, "bisect").holds(share):
            lo = mid
        else:
            hi = mid
    if lo is not None and hi is not None and not wide():
        stops.append(f"bracket within {plan.resolution:.0%}")
    for i in range(min(repeats, plan.max_probes - len(done))):
        nearest = [x for x in ((lo, hi) if i % 2 == 0 else (hi, lo)) if x is not None]
        if not nearest:
            break
        run(nearest[0], "repeat")
    if len(done) >= plan.max_probes:
        stops.append("probe budget spent")
    stopped = "; ".join(stops) or "search complete"
    return SearchResult(done, knee([r for _, r in done], share), stopped)


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def knee(results: Sequence[ProbeResult], share: float) -> Knee:
    """The capacity and its interval from every trial (see the module docstring)."""
    by_rate: dict[float, list[ProbeResult]] = {}
    for r in results:
        by_rate.setdefault(r.rate_rps, []).append(r)
    rates = sorted(by_rate)
    failed = [x for x in rates if not any(t.holds(share) for t in by_rate[x])]
    upper = min(failed) if failed else None
    held = [
        x for x in rates if all(t.holds(share) for t in by_rate[x]) and (upper is None or x < upper)
    ]
    lower = max(held) if held else 0.0
    above = [x for x in rates if x > lower]
    nxt = min(above) if above else None
    capacity = lower
    if nxt is not None and held:
        ga = _mean([t.goodput_share for t in by_rate[lower] if t.goodput_share is not None])
        gb = _mean([t.goodput_share for t in by_rate[nxt] if t.goodput_share is not None])
        if ga is not None and gb is not None and gb < share <= ga and ga > gb:
            capacity = lower + (nxt - lower) * (ga - share) / (ga - gb)
    if upper is not None:
        capacity = min(capacity, upper)
    near = [t for x in (lower, nxt) if x is not None and x in by_rate for t in by_rate[x]]
    per_request = _mean(
        [t.output_tokens_per_request for t in near if t.output_tokens_per_request is not None]
    )

    def tok(x: float | None) -> float | None:
        return None if x is None or per_request is None else x * per_request

    # Where the resource is read: the lowest rate that failed in every trial, else the lowest
    # rate above the capacity that failed in some trial.
    failing = [x for x in rates if x > lower and not all(t.holds(share) for t in by_rate[x])]
    at = upper if upper is not None else (min(failing) if failing else None)
    if at is None:
        reach = f"up to {max(rates):.3g} req/s" if rates else "no probe ran"
        resource, why = (
            NOT_REACHED,
            (
                f"every probe held, {reach}: allow more probes (--max-probes) or start higher "
                f"([capacity] start_rps)"
            ),
        )
    else:
        found = [t.resource for t in by_rate[at] if not t.holds(share) and t.resource]
        # A queue at a named limit in any failing trial names it (the most often seen, the
        # later on a tie); compute only where no trial queued at one.
        named = [f for f in found if f[0] != COMPUTE] or found
        if named:
            names = [f[0] for f in named]
            resource, why = max(reversed(named), key=lambda f: names.count(f[0]))
        else:
            resource, why = NOT_REACHED, f"no /metrics samples at {at:.3g} req/s"
        if upper is None:
            why += f"; no rate failed in every trial, {at:.3g} req/s failed in some"
    return Knee(capacity, lower, upper, tok(capacity), tok(lower), tok(upper), resource, why)
