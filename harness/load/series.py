"""A load run's per-request records as series: latency and request rate over the run, and
latency against the number of requests in flight (ramp's load curve)."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

from harness.load.records import RequestRecord
from harness.load.stats import percentile


@dataclass(frozen=True)
class TimeBin:
    t_s: float  # the bin's start, from the first request's start
    started: int
    completed_ok: int
    ttft_p50_ms: float | None  # of the requests started in the bin that succeeded
    ttft_p95_ms: float | None


def over_time(records: Sequence[RequestRecord], most_bins: int = 60) -> tuple[float, list[TimeBin]]:
    """(bin width in s, bins): whole seconds, wide enough for at most `most_bins` bins."""
    timed = [r for r in records if r.e2e_s is not None]
    if not timed:
        return 1.0, []
    t0 = min(r.actual_start for r in timed)
    end = max(r.actual_start + (r.e2e_s or 0.0) for r in timed)
    width = float(max(1, -(-int(end - t0) // most_bins)))
    n = max(1, math.ceil((end - t0) / width))

    def index(t: float) -> int:
        return min(n - 1, int((t - t0) // width))

    started: list[list[RequestRecord]] = [[] for _ in range(n)]
    completed = [0] * n
    for r in timed:
        started[index(r.actual_start)].append(r)
        if r.ok:
            completed[index(r.actual_start + (r.e2e_s or 0.0))] += 1
    bins = []
    for i in range(n):
        ttft = [r.ttft_s * 1000 for r in started[i] if r.ok and r.ttft_s is not None]
        bins.append(
            TimeBin(
                i * width,
                len(started[i]),
                completed[i],
                percentile(ttft, 50),
                percentile(ttft, 95),
            )
        )
    return width, bins


@dataclass(frozen=True)
class ConcurrencyLevel:
    in_flight: int  # requests in flight when these started, themselves included
    requests: int
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    e2e_p50_ms: float | None


def by_concurrency(records: Sequence[RequestRecord]) -> list[ConcurrencyLevel]:
    """The successful requests grouped by how many requests were in flight as each started."""
    timed = [r for r in records if r.e2e_s is not None]
    starts = sorted(r.actual_start for r in timed)
    ends = sorted(r.actual_start + (r.e2e_s or 0.0) for r in timed)
    levels: dict[int, list[RequestRecord]] = {}
    for r in timed:
        if not r.ok:
            continue
        n = bisect.bisect_right(starts, r.actual_start) - bisect.bisect_right(ends, r.actual_start)
        levels.setdefault(n, []).append(r)
    out = []
    for n in sorted(levels):
        rs = levels[n]
        ttft = [r.ttft_s * 1000 for r in rs if r.ttft_s is not None]
        e2e = [(r.e2e_s or 0.0) * 1000 for r in rs]
        out.append(
            ConcurrencyLevel(
                n, len(rs), percentile(ttft, 50), percentile(ttft, 95), percentile(e2e, 50)
            )
        )
    return out
