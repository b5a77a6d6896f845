"""What a capacity probe's series say about the stack: whether it was over-saturated (a queue
that grows through the probe, or TTFT that rises with time at a constant arrival rate), and
which resource limits it (the classifier, the primary's slots, its KV pool, or compute).

Both read the telemetry sampler's timeline rows (harness.telemetry.sampler.timeline_row) and the
probe's request records; nothing here scrapes.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.load.records import RequestRecord

# A slope is significant when its estimate is this many standard errors above 0 (one-sided,
# about 99 % under a normal approximation).
Z_SIGNIFICANT = 2.33

CLASSIFIER = "classifier"
PRIMARY_SLOTS = "primary slots"
PRIMARY_KV = "primary KV pool"
COMPUTE = "compute"
NOT_REACHED = "not reached"


@dataclass(frozen=True)
class Trend:
    slope: float  # units per second
    stderr: float
    rise: float  # slope x the span of x: the fitted change over the probe
    n: int

    @property
    def significant(self) -> bool:
        return self.n >= 3 and self.slope > 0 and self.slope > Z_SIGNIFICANT * self.stderr


def trend(points: Sequence[tuple[float, float]]) -> Trend | None:
    """Least-squares line through (x, y); None with fewer than 3 points or no spread in x."""
    if len(points) < 3:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx <= 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    resid = sum((y - my - slope * (x - mx)) ** 2 for x, y in points)
    stderr = math.sqrt(resid / (len(points) - 2) / sxx) if len(points) > 2 else math.inf
    return Trend(slope, stderr, slope * (max(xs) - min(xs)), len(points))


def over_saturation(
    rows: Sequence[Mapping[str, Any]],
    records: Sequence[RequestRecord],
    *,
    window: tuple[float, float],
    queue_rise: float,
    ttft_rise_s: float,
) -> str | None:
    """A sentence when the probe over-saturated the stack, else None.

    - A queue grows: an engine's vllm:num_requests_waiting rises through the arrival `window`
      (epoch seconds) significantly and by at least `queue_rise` requests (fitted).
    - TTFT rises with send time: the slope of the successful requests' TTFT against their
      intended start is significant and the fitted rise is at least `ttft_rise_s`.
    """
    start, end = window
    for engine in sorted({str(r["engine"]) for r in rows}):
        pts = [
            (float(r["t"]), float(r.get("waiting") or 0.0))
            for r in rows
            if r["engine"] == engine and start <= float(r["t"]) <= end
        ]
        t = trend(pts)
        if t is not None and t.significant and t.rise >= queue_rise:
            return (
                f"the queue at {engine} grew through the probe: waiting rose by {t.rise:.1f} "
                f"requests (fitted, {t.slope:.2f}/s) at a constant arrival rate"
            )
    timed = [
        (r.intended_start, r.ttft_s)
        for r in records
        if r.ok and r.ttft_s is not None and start <= r.intended_start <= end
    ]
    t = trend(timed)
    if t is not None and t.significant and t.rise >= ttft_rise_s:
        return (
            f"TTFT rose with time at a constant arrival rate: +{t.rise:.2f} s over the probe "
            f"(fitted, {t.slope * 1000:.0f} ms/s, {t.n} requests)"
        )
    return None


@dataclass(frozen=True)
class EngineLoad:
    """One engine's rows of a probe, summarised for the limiting-resource call."""

    samples: int
    queued_share: float  # share of samples with requests waiting
    queued_full_share: float  # ... while every max-num-seqs slot ran
    queued_kv_share: float  # ... while the KV pool was near full and a slot was free
    waiting_mean: float
    kv_peak: float
    preemptions: float
    max_num_seqs: int | None

    def as_dict(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in vars(self).items()}


def engine_load(
    rows: Sequence[Mapping[str, Any]], max_num_seqs: int | None, kv_full: float
) -> EngineLoad | None:
    if not rows:
        return None
    n = len(rows)

    def share(cond: Any) -> float:
        return sum(1 for r in rows if cond(r)) / n

    def waiting(r: Mapping[str, Any]) -> float:
        return float(r.get("waiting") or 0.0)

    def full(r: Mapping[str, Any]) -> bool:
        return max_num_seqs is not None and float(r.get("running") or 0.0) >= max_num_seqs

    def kv(r: Mapping[str, Any]) -> float:
        return float(r.get("kv_usage") or 0.0)

    return EngineLoad(
        samples=n,
        queued_share=share(lambda r: waiting(r) > 0),
        queued_full_share=share(lambda r: waiting(r) > 0 and full(r)),
        queued_kv_share=share(lambda r: waiting(r) > 0 and not full(r) and kv(r) >= kv_full),
        waiting_mean=statistics.fmean(waiting(r) for r in rows),
        kv_peak=max(kv(r) for r in rows),
        preemptions=float(rows[-1].get("preemptions") or 0.0)
        - float(rows[0].get("preemptions") or 0.0),
        max_num_seqs=max_num_seqs,
    )


def limiting_resource(
    rows: Sequence[Mapping[str, Any]],
    *,
    classifier: str,
    primary: str,
    max_num_seqs: Mapping[str, int],
    kv_full: float = 0.9,
    bound_share: float = 0.1,
) -> tuple[str, str]:
    """(resource, why) for the rows of the probes at the knee.

    - primary KV pool: the primary preempted sequences, or requests waited there with a slot
      free and KV usage at `kv_full` or more, in at least `bound_share` of the samples;
    - primary slots / classifier: requests waited at that engine while all its max-num-seqs
      slots ran, in at least `bound_share` of the samples; where both did, the one with the
      longer queue on average;
    - compute: neither engine queued at its limits, and latency grew anyway.
    """
    loads = {
        name: engine_load([r for r in rows if r["engine"] == name], max_num_seqs.get(name), kv_full)
        for name in (classifier, primary)
    }
    p, c = loads[primary], loads[classifier]
    if p is not None and (p.preemptions > 0 or p.queued_kv_share >= bound_share):
        return PRIMARY_KV, (
            f"{primary}: {p.preemptions:.0f} preemptions, requests waited with a slot free and "
            f"KV usage >= {kv_full:.0%} in {p.queued_kv_share:.0%} of samples (KV peak "
            f"{p.kv_peak:.0%})"
        )
    bound = [
        (load.waiting_mean, name, resource, load)
        for name, resource, load in ((primary, PRIMARY_SLOTS, p), (classifier, CLASSIFIER, c))
        if load is not None and load.queued_full_share >= bound_share
    ]
    if bound:
        _, name, resource, load = max(bound, key=lambda b: b[0])
        return resource, (
            f"{name}: all {load.max_num_seqs} max-num-seqs slots ran with requests waiting in "
            f"{load.queued_full_share:.0%} of samples (waiting {load.waiting_mean:.1f} on "
            f"average, KV peak {load.kv_peak:.0%})"
        )
    seen = "; ".join(
        f"{name}: waiting in {load.queued_share:.0%} of samples, KV peak {load.kv_peak:.0%}"
        for name, load in loads.items()
        if load is not None
    )
    return COMPUTE, (
        f"no engine queued at its max-num-seqs or its KV pool, and latency grew anyway "
        f"({seen or 'no engine samples'})"
    )
