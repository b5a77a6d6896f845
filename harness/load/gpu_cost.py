"""What a load run cost the GPU: energy over the load window, power, output tokens per joule, and
the stretches in which the card throttled, each with the client latency of the requests sent in
it against those sent while it did not.

A pure function of the NVML series (harness.telemetry.gpu_power) and the run's request records.
Only the requests the stack's engines answered count: those through the router routed `local`,
and those sent to an engine directly. A `search` answer comes from xAI, not from the card.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from harness.load.records import RequestRecord
from harness.load.stats import percentile
from harness.telemetry.gpu_power import GpuPowerSampler, throttling

COUNTER = "energy counter"
INTEGRATED = "power integration"
Point = tuple[float, float]


def served(records: Sequence[RequestRecord]) -> list[RequestRecord]:
    """The successful requests the engines on the card answered."""
    return [r for r in records if r.ok and (r.target != "router" or r.route == "local")]


def load_window(records: Sequence[RequestRecord]) -> tuple[float, float] | None:
    """From the first request sent to the last answer's end; None without requests."""
    if not records:
        return None
    start = min(r.actual_start for r in records)
    end = max(r.actual_start + (r.e2e_s or r.ttft_s or 0.0) for r in records)
    return start, max(start, end)


def _points(series: Sequence[Mapping[str, Any]], key: str) -> list[Point]:
    return sorted((float(r["t"]), float(r[key])) for r in series if r.get(key) is not None)


def _at(points: Sequence[Point], t: float) -> float:
    """Linear interpolation of sorted `points` at t, held flat past either end."""
    if t <= points[0][0]:
        return points[0][1]
    for (t0, v0), (t1, v1) in itertools.pairwise(points):
        if t <= t1:
            return v0 if t1 == t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)
    return points[-1][1]


def clipped(points: Sequence[Point], start: float, end: float) -> list[Point]:
    """`points` inside [start, end], with values interpolated at both ends."""
    inner = [(t, v) for t, v in points if start < t < end]
    return [(start, _at(points, start)), *inner, (end, _at(points, end))]


def energy_over(
    series: Sequence[Mapping[str, Any]], start: float, end: float
) -> tuple[float | None, str | None]:
    """Joules between start and end, and how they were found: the delta of the board's energy
    counter where it has one that only grows, else the power samples integrated over time.
    Either covers only the part of the window that the samples span."""
    counter = _points(series, "energy_j")
    if len(counter) >= 2 and all(b[1] >= a[1] for a, b in itertools.pairwise(counter)):
        return _at(counter, end) - _at(counter, start), COUNTER
    power = _points(series, "power_w")
    if len(power) >= 2:
        a, b = max(start, power[0][0]), min(end, power[-1][0])
        pts = clipped(power, a, b) if a < b else []
        joules = sum((t1 - t0) * (v0 + v1) / 2 for (t0, v0), (t1, v1) in itertools.pairwise(pts))
        return joules, INTEGRATED
    return None, None


def throttle_stretches(series: Sequence[Mapping[str, Any]]) -> list[tuple[float, float, list[str]]]:
    """(start, end, reasons) of each run of samples with a throttling reason: from the first
    such sample to the next sample without one (the last sample where the series ends)."""
    out: list[tuple[float, float, list[str]]] = []
    rows = sorted(series, key=lambda r: float(r["t"]))
    begin: float | None = None
    reasons: list[str] = []
    for r in rows:
        found = throttling(r.get("throttle") or [])
        t = float(r["t"])
        if found:
            if begin is None:
                begin, reasons = t, []
            reasons += [x for x in found if x not in reasons]
        elif begin is not None:
            out.append((begin, t, reasons))
            begin = None
    if begin is not None:
        out.append((begin, float(rows[-1]["t"]), reasons))
    return out


def _latency(records: Sequence[RequestRecord]) -> dict[str, Any]:
    ttft = [r.ttft_s for r in records if r.ttft_s is not None]
    e2e = [r.e2e_s for r in records if r.e2e_s is not None]
    return {
        "requests": len(records),
        "ttft_p95_s": percentile(ttft, 95),
        "e2e_p95_s": percentile(e2e, 95),
    }


def _round(v: float | None, digits: int = 3) -> float | None:
    return None if v is None else round(v, digits)


def not_measured(reason: str) -> dict[str, Any]:
    return {"measured": False, "reason": reason}


def gpu_cost(
    series: Sequence[Mapping[str, Any]],
    records: Sequence[RequestRecord],
    *,
    nvml_errors: int = 0,
) -> dict[str, Any]:
    """The record's gpu_power section of a profile. Times of stretches are seconds from the
    load window's start (`t0`, epoch seconds)."""
    if not series:
        return not_measured("no NVML samples")
    times = [float(r["t"]) for r in series]
    start, end = load_window(records) or (min(times), max(times))
    joules, source = energy_over(series, start, end)
    ok = served(records)
    tokens = sum(r.output_tokens or 0 for r in ok)
    inside = [r for r in series if start <= float(r["t"]) <= end] or list(series)
    power = [float(r["power_w"]) for r in inside if r.get("power_w") is not None]
    temps = [float(r["temp_c"]) for r in inside if r.get("temp_c") is not None]
    clocks = [float(r["sm_clock_mhz"]) for r in inside if r.get("sm_clock_mhz") is not None]
    stretches = throttle_stretches(series)

    def during(r: RequestRecord, a: float, b: float) -> bool:
        return a <= r.actual_start < b or (a == b and r.actual_start == a)

    rows = []
    for a, b, reasons in stretches:
        rows.append(
            {"start_s": round(a - start, 3), "end_s": round(b - start, 3), "reasons": reasons}
            | _latency([r for r in ok if during(r, a, b)])
        )
    outside = [r for r in ok if not any(during(r, a, b) for a, b, _ in stretches)]
    fields = ("power_w", "energy_j", "sm_clock_mhz", "temp_c", "throttle_mask")
    return {
        "measured": True,
        "samples": len(series),
        "t0": round(start, 3),
        "window_s": round(end - start, 3),
        "energy_j": _round(joules),
        "energy_source": source,
        "power_mean_w": _round(sum(power) / len(power)) if power else None,
        "power_max_w": _round(max(power, default=None)),
        "temp_max_c": _round(max(temps, default=None)),
        "sm_clock_mhz_min": _round(min(clocks, default=None)),
        "sm_clock_mhz_max": _round(max(clocks, default=None)),
        "output_tokens": tokens,
        "tokens_per_joule": _round(tokens / joules, 4) if joules else None,
        "throttled_s": round(sum(b - a for a, b, _ in stretches), 3),
        "throttle_stretches": rows,
        "unthrottled": _latency(outside),
        "unsupported": [f for f in fields if all(r.get(f) is None for r in series)],
        "nvml_errors": nvml_errors,
    }


def gpu_power_section(power: GpuPowerSampler, records: Sequence[RequestRecord]) -> dict[str, Any]:
    """The section for what `power` sampled beside the load; why not, where it sampled nothing."""
    if power.skipped is not None:
        return not_measured(power.skipped)
    return gpu_cost(power.rows, records, nvml_errors=power.errors)
