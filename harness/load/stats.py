"""Statistics of a load run: exact percentiles per route, KV pressure, queueing, and the client's
TTFT against the engine's own histogram over the same window."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from harness.load.kvmodel import KvCapacity, predict_peak, unused_fraction
from harness.load.records import RequestRecord
from harness.telemetry.prom import ITL, Scrape
from harness.telemetry.sampler import WAITING_BY_REASON, Sampler

PERCENTILES = (50, 90, 95, 99)
TTFT = "vllm:time_to_first_token_seconds"


def percentile(values: Sequence[float], p: float) -> float | None:
    """Exact percentile with linear interpolation between order statistics (numpy's default)."""
    if not values:
        return None
    xs = sorted(values)
    k = (len(xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def histogram_bucket(q: float, buckets: dict[float, float]) -> tuple[float, float] | None:
    """The bucket (lower, upper] of cumulative `buckets` that holds the q-quantile: all that a
    histogram says about it. The upper bound is inf when the quantile lies past the last
    finite bound."""
    total = max(buckets.values(), default=0.0)
    if total <= 0:
        return None
    rank = q * total
    lower = 0.0
    for bound, count in sorted(buckets.items()):
        if count >= rank and count > 0:
            return lower, bound
        lower = bound
    return lower, float("inf")


def bucket_bounds(q: float, buckets: dict[float, float]) -> list[float | None] | None:
    """histogram_bucket as [lower, upper] for JSON, upper None where the bucket is +Inf."""
    found = histogram_bucket(q, buckets)
    if found is None:
        return None
    lower, upper = found
    return [lower, None if math.isinf(upper) else upper]


def summary(values: Sequence[float]) -> dict[str, float | None]:
    out: dict[str, float | None] = {f"p{p}": percentile(values, p) for p in PERCENTILES}
    out["mean"] = statistics.fmean(values) if values else None
    out["n"] = float(len(values))
    return out


def latency_stats(records: Sequence[RequestRecord]) -> dict[str, Any]:
    """Per label (route, or the target for direct users) and overall; failures counted apart."""
    groups: dict[str, list[RequestRecord]] = {"all": list(records)}
    for r in records:
        groups.setdefault(r.label, []).append(r)
    out: dict[str, Any] = {}
    for label, recs in groups.items():
        ok = [r for r in recs if r.ok]
        tps = [
            r.output_tokens / (r.e2e_s - r.ttft_s)
            for r in ok
            if r.output_tokens and r.ttft_s is not None and r.e2e_s and r.e2e_s > r.ttft_s
        ]
        tpot = [t for r in ok if (t := r.tpot_s) is not None]
        window = throughput(ok)["window_s"]
        out_tokens = sum(r.output_tokens or 0 for r in ok)
        out[label] = {
            "requests": len(recs),
            "ok": len(ok),
            "failed": len(recs) - len(ok),
            "ttft_s": summary([r.ttft_s for r in ok if r.ttft_s is not None]),
            "ttft_from_intended_s": summary(
                [r.ttft_from_intended_s for r in ok if r.ttft_from_intended_s is not None]
            ),
            "itl_s": summary([g for r in ok for g in r.itl_s]),
            "e2e_s": summary([r.e2e_s for r in ok if r.e2e_s is not None]),
            "output_tokens_per_s": summary(tps),
            "tpot_s": summary(tpot),
            "output_tokens": out_tokens,
            # The route's output tokens over the window its requests spanned.
            "output_throughput_tok_s": out_tokens / window if window else None,
        }
    return out


def throughput(records: Sequence[RequestRecord]) -> dict[str, float | None]:
    ok = [r for r in records if r.ok and r.e2e_s is not None]
    if not ok:
        return {"requests_per_s": 0.0, "window_s": None}
    start = min(r.actual_start for r in ok)
    end = max(r.actual_start + (r.e2e_s or 0.0) for r in ok)
    window = max(end - start, 1e-9)
    return {"requests_per_s": len(ok) / window, "window_s": window}


def dispatch_delays(records: Sequence[RequestRecord]) -> list[float]:
    """How late the client sent each request, in seconds (harness.load.users defines when a
    request is meant to go out). Failed requests count: a late send is the client's, whatever
    the answer. A record without dispatch_delay_s gives actual_start - intended_start."""
    return [
        r.dispatch_delay_s if r.dispatch_delay_s is not None else r.actual_start - r.intended_start
        for r in records
    ]


def dispatch_summary(records: Sequence[RequestRecord]) -> dict[str, float | None]:
    """p50, p95, max and mean of the dispatch delay, and how many requests it covers."""
    delays = dispatch_delays(records)
    return {
        "p50": percentile(delays, 50),
        "p95": percentile(delays, 95),
        "max": max(delays) if delays else None,
        "mean": statistics.fmean(delays) if delays else None,
        "n": float(len(delays)),
    }


def client_behind(dispatch: Mapping[str, Any], limit_s: float) -> str | None:
    """A sentence when the client fell behind its own schedule: the p95 dispatch delay of a
    dispatch_summary above `limit_s` ([load] max_dispatch_delay_p95_s). Such a run sent less
    load than its profile says, so its latencies flatter the stack; None when it kept up or
    sent nothing (the profile's own request count judges that)."""
    p95 = dispatch.get("p95")
    if p95 is None or p95 <= limit_s:
        return None
    worst = dispatch.get("max")
    n = int(dispatch.get("n") or 0)
    return (
        f"the load client, not the stack, fell behind its own schedule: p95 dispatch delay "
        f"{p95:.3f} s (max {worst:.3f} s, {n} requests) > max_dispatch_delay_p95_s {limit_s:g} "
        f"([load] in harness.toml); requests went out late, so the stack got less load than the "
        f"profile asks and its latencies look better than they are. The run is invalid, not "
        f"green: run it with fewer users (harness load --users N), or spread the client over "
        f"more processes (harness load --processes N here, --workers N on other machines)"
    )


def engine_stats(sampler: Sampler, max_num_seqs: int | Mapping[str, int]) -> dict[str, Any]:
    """KV peak and time above 90 %, most waiting at once, preemptions, from the timeline.
    `max_num_seqs`: each engine's own (by name), or one for all."""
    out: dict[str, Any] = {}
    for engine in sampler.engines:
        limit = max_num_seqs.get(engine) if isinstance(max_num_seqs, Mapping) else max_num_seqs
        rows = [r for r in sampler.rows if r["engine"] == engine]
        if not rows:
            continue
        above = 0.0
        for a, b in itertools.pairwise(rows):
            if a["kv_usage"] >= 0.9:
                above += b["t"] - a["t"]
        out[engine] = {
            "samples": len(rows),
            "kv_usage_peak": max(r["kv_usage"] for r in rows),
            "kv_usage_above_90_s": round(above, 3),
            "running_max": max(r["running"] for r in rows),
            "waiting_max": max(r["waiting"] for r in rows),
            "waiting_capacity_max": max(r["waiting_capacity"] for r in rows),
            # Older servers lack the metric and the timeline reads it as 0, not as "waiting".
            "waiting_by_reason": sampler.last.get(engine, Scrape()).has(WAITING_BY_REASON),
            "first_waiting_s": next(
                (round(r["t"] - rows[0]["t"], 3) for r in rows if r["waiting"] > 0), None
            ),
            "preemptions": rows[-1]["preemptions"] - rows[0]["preemptions"],
            "prompt_tokens": rows[-1]["prompt_tokens"] - rows[0]["prompt_tokens"],
            "generation_tokens": rows[-1]["generation_tokens"] - rows[0]["generation_tokens"],
            "max_num_seqs": limit,
            # A histogram bounds a percentile to one bucket: (lower, upper], never a number.
            "ttft_server_p50_bucket_s": bucket_bounds(0.5, sampler.histogram_window(engine, TTFT)),
            "itl_server_p50_bucket_s": bucket_bounds(0.5, sampler.histogram_window(engine, ITL)),
        }
        for key, name in (("ttft_server_mean_s", TTFT), ("itl_server_mean_s", ITL[0])):
            total, count = sampler.counter_window(engine, name)
            out[engine][key] = total / count if count else None
    return out


def client_overhead_ms(
    records: Sequence[RequestRecord], sampler: Sampler, engine: str
) -> dict[str, Any]:
    """Client TTFT against the engine's TTFT over the same window, in ms.

    Through the router the client's TTFT includes classification; X-Classifier-Ms is taken off,
    so what is left is the primary's TTFT plus router and client overhead. Only the means are
    subtracted: the engine's is exact (_sum/_count). Its median is known only to lie in one
    histogram bucket, so it is given as that bucket next to the client's exact median, never
    subtracted from it.
    """
    client = [
        (r.ttft_s - (r.classifier_ms or 0.0) / 1000.0)
        for r in records
        if r.ok and r.ttft_s is not None and (r.target != "router" or r.route == "local")
    ]
    total, count = sampler.counter_window(engine, TTFT)
    server_mean = total / count if count else None
    client_mean = statistics.fmean(client) if client else None
    client_p50 = percentile(client, 50)
    bucket = bucket_bounds(0.5, sampler.histogram_window(engine, TTFT))
    return {
        "requests": float(len(client)),
        "engine_requests": count,
        "mean_ms": None
        if client_mean is None or server_mean is None
        else (client_mean - server_mean) * 1000,
        "client_p50_ms": None if client_p50 is None else client_p50 * 1000,
        "engine_p50_bucket_ms": None
        if bucket is None
        else [b if b is None else b * 1000 for b in bucket],
    }


def route_reasons(records: Sequence[RequestRecord]) -> dict[str, int]:
    """X-Route-Reason counts of the requests sent through the router; "none" where a request
    got no answer that carried one."""
    out: dict[str, int] = {}
    for r in records:
        if r.target == "router":
            key = r.reason or "none"
            out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


def kv_pool(
    capacity: KvCapacity | None,
    records: Sequence[RequestRecord],
    measured_peak: float | None,
    *,
    max_num_seqs: int,
    max_model_len: int,
    max_tokens: int,
    predict: bool,
) -> dict[str, Any]:
    """The primary's KV pool against what max-num-seqs sequences can use of it, the measured
    peak, and (`predict`, for kv-pressure) the peak the KV model expects from the prompts the
    primary actually served (route local: the router's other route never reaches it), and how
    many requests through the router went to each route."""
    served = [r for r in records if r.target != "router" or r.route == "local"]
    prompts = [r.prompt_tokens for r in served if r.prompt_tokens]
    outputs = [r.output_tokens for r in served if r.output_tokens]
    routed = [r.route for r in records if r.target == "router" and r.route]
    out: dict[str, Any] = {
        "capacity_tokens": capacity.tokens if capacity else None,
        "capacity_source": capacity.source if capacity else None,
        "block_size": capacity.block_size if capacity else None,
        "num_gpu_blocks": capacity.num_gpu_blocks if capacity else None,
        "max_num_seqs": max_num_seqs,
        "max_model_len": max_model_len,
        "pool_multiple": round(capacity.tokens / max_model_len, 3) if capacity else None,
        "unused_at_max_num_seqs": round(
            unused_fraction(capacity.tokens, max_num_seqs, max_model_len), 4
        )
        if capacity
        else None,
        "measured_peak": measured_peak,
        "prompt_tokens_min": min(prompts) if prompts else None,
        "prompt_tokens_max": max(prompts) if prompts else None,
        "output_tokens": max(outputs) if outputs else max_tokens,
        "routed_local": routed.count("local"),
        "routed_search": routed.count("search"),
    }
    if predict and capacity and prompts:
        pred = predict_peak(
            max_num_seqs, min(prompts), max(prompts), out["output_tokens"], capacity.tokens,
            capacity.block_size,
        )  # fmt: skip
        out["predicted_peak_low"] = round(pred.low, 4)
        out["predicted_peak_high"] = round(pred.high, 4)
    return out
