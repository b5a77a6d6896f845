"""One capacity probe against a running stack: open-loop Poisson arrivals at one rate for a
bounded time (tests/load/locustfile_capacity.py in a locust subprocess), the telemetry sampler
beside it, then what the search needs (harness.load.capacity.ProbeResult).

Before each probe the engines are given time to finish what an earlier probe left (abandoned
requests may still run there). During the probe a watcher reads the sampler's rows: once a
queue has grown significantly through at least MIN_WATCH_SHARE of the arrival window (after
the first FILL_SHARE of it, in which the queues fill to their level), it asks
the locust shape to end the probe (harness.load.open_loop.STOP_FILE): an over-saturated probe
fails whatever it would measure next, and a longer one only builds a longer queue to drain.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from harness.load.arrivals import STOP_FILE, pool_size
from harness.load.capacity import ProbeResult
from harness.load.goodput import goodput
from harness.load.gpu_cost import gpu_power_section
from harness.load.processes import run_locust
from harness.load.profiles import max_tokens_for
from harness.load.records import read_records
from harness.load.runner import HARNESS_ROOT, profile_settings
from harness.load.saturation import limiting_resource, over_saturation
from harness.load.slo_table import SloTable
from harness.load.stats import client_behind, dispatch_summary, engine_stats, latency_stats
from harness.stack.base import Stack
from harness.telemetry.gpu_power import GpuPowerSampler
from harness.telemetry.prom import scrape
from harness.telemetry.sampler import Sampler

LOCUSTFILE = HARNESS_ROOT / "tests" / "load" / "locustfile_capacity.py"
# The profiles whose requests are independent of each other, so that they can arrive open-loop.
OPEN_LOOP_PROFILES = ("steady", "saturate", "kv-pressure")
MIN_WATCH_SHARE = 0.4
# The share of a probe's start in which the queues fill (fill_s).
FILL_SHARE = 0.15


@dataclass(frozen=True)
class ProbeConfig:
    """How each probe runs and is judged ([capacity] and [load] in harness.toml)."""

    profile: str = "steady"
    duration_s: float = 20.0
    request_cut_s: float = 30.0
    max_tokens: int = 64
    context_fraction: float = 0.65
    max_dispatch_delay_p95_s: float = 0.05
    queue_rise: float = 3.0
    ttft_rise_s: float = 1.0
    kv_full: float = 0.9
    bound_share: float = 0.1
    settle_s: float = 30.0
    # A probe runs until about this many requests arrived (longer than duration_s at low
    # rates), for at most longest_share x duration_s.
    min_requests: int = 25
    longest_share: float = 2.0

    def duration_for(self, rate_rps: float) -> float:
        """The arrival window of a probe at `rate_rps`: duration_s, longer at a rate too low
        to send min_requests in it (one bad request in ten is no share to judge by)."""
        wanted = max(self.duration_s, self.min_requests / rate_rps)
        return min(wanted, self.longest_share * self.duration_s)


def ttft_rise_for(table: SloTable, share: float, default_s: float = 1.0) -> float:
    """The TTFT rise that counts as over-saturation: `share` of the tightest p95_ttft_s limit
    of the profile's routes, `default_s` where it has none."""
    limits = [v["p95_ttft_s"] for v in table.routes.values() if "p95_ttft_s" in v]
    return share * min(limits) if limits else default_s


def request_cut_for(table: SloTable, most_s: float) -> float:
    """How long a request may stay unanswered before it is abandoned: twice the largest
    latency limit of the profile's routes (such a request has missed them all), at most
    `most_s`, which is also the cut where the profile has no latency limit."""
    limits = [v for route in table.routes.values() for v in route.values()]
    return min(most_s, 2 * max(limits)) if limits else most_s


def settle(stack: Stack, within_s: float) -> float:
    """Wait until no engine runs or queues a request, at most `within_s`; the seconds waited."""
    t0 = time.monotonic()
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() - t0 < within_s:
            try:
                busy = any(
                    s.value("vllm:num_requests_running") + s.value("vllm:num_requests_waiting")
                    for s in (scrape(e.url, client) for e in stack.engines)
                )
            except httpx.HTTPError:
                busy = True
            if not busy:
                break
            time.sleep(0.5)
    return time.monotonic() - t0


class _Watcher:
    """Writes the stop file once the sampler's rows show a queue growing through the probe."""

    def __init__(self, sampler: Sampler, stop: Path, cfg: ProbeConfig) -> None:
        self.sampler, self.stop, self.cfg = sampler, stop, cfg
        self.reason: str | None = None
        self.at_s: float | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probe-watch", daemon=True)

    def __enter__(self) -> _Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        start: float | None = None  # the arrivals' start: the first sample of a busy engine
        duration = self.cfg.duration_s
        while not self._done.wait(1.0):
            rows = list(self.sampler.rows)
            if start is None:
                start = next((float(r["t"]) for r in rows if r["running"] + r["waiting"]), None)
                if start is None:
                    continue
            now = time.time()
            if now - start > duration:
                return
            begin = start + fill_s(duration)
            if now - begin < MIN_WATCH_SHARE * duration:
                continue
            why = over_saturation(
                rows, [], window=(begin, now),
                queue_rise=self.cfg.queue_rise, ttft_rise_s=self.cfg.ttft_rise_s,
            )  # fmt: skip
            if why:
                self.reason, self.at_s = why, round(now - start, 1)
                self.stop.write_text(why + "\n")
                return


def fill_s(duration_s: float) -> float:
    """The start of a probe that the over-saturation checks leave out: the queues fill from
    empty to their level at this rate, a rise that is no growth."""
    return max(2.0, FILL_SHARE * duration_s)


def run_probe(
    stack: Stack, rate_rps: float, out: Path, cfg: ProbeConfig, slo: SloTable, seed: int = 1
) -> ProbeResult:
    """One probe at `rate_rps`; its locust files, timeline, requests and stats.json in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    cfg = replace(cfg, duration_s=cfg.duration_for(rate_rps))
    primary = stack.spec.primary.engine
    assert primary is not None
    settings = profile_settings(
        stack, cfg.profile, out / "requests.jsonl", duration_s=cfg.duration_s,
        users=pool_size(rate_rps, cfg.duration_s),
        max_tokens=max_tokens_for(cfg.profile, cfg.max_tokens),
        context_fraction=cfg.context_fraction, seed=seed,
    )  # fmt: skip
    settings = replace(
        settings, rate_per_s=rate_rps, request_cut_s=cfg.request_cut_s, profile=cfg.profile,
        min_requests=0,
    )  # fmt: skip
    settled_s = settle(stack, cfg.settle_s)
    sampler = Sampler({e.name: e.url for e in stack.engines}, interval_s=0.25)
    power = GpuPowerSampler.for_target(stack.target, sampler.interval_s)
    watcher = _Watcher(sampler, out / STOP_FILE, cfg)
    with sampler, power, watcher:
        run_locust(
            LOCUSTFILE, stack.entry.url, settings, out, cwd=HARNESS_ROOT,
            timeout_s=cfg.duration_s + cfg.request_cut_s + 300,
        )  # fmt: skip
    sampler.save(out / "timeline.jsonl")
    power.save(out)
    records = read_records(settings.records)
    seqs = {e.name: e.engine.max_num_seqs for e in stack.spec.engines if e.engine is not None}
    starts = [r.intended_start for r in records]
    window = (min(starts) + fill_s(cfg.duration_s), max(starts)) if starts else (0.0, 0.0)
    oversat = watcher.reason or over_saturation(
        sampler.rows, records, window=window, queue_rise=cfg.queue_rise,
        ttft_rise_s=cfg.ttft_rise_s,
    )  # fmt: skip
    dispatch = dispatch_summary(records)
    behind = client_behind(dispatch, cfg.max_dispatch_delay_p95_s)
    good = goodput(slo, records)
    latency = latency_stats(records)
    ok_tokens = [r.output_tokens for r in records if r.ok and r.output_tokens]
    arrival_s = watcher.at_s or cfg.duration_s
    arriving = [r for r in sampler.rows if not starts or min(starts) <= r["t"] <= max(starts)]
    resource = limiting_resource(
        arriving or sampler.rows, classifier=stack.classifier.name, primary=stack.primary.name,
        max_num_seqs=seqs, kv_full=cfg.kv_full, bound_share=cfg.bound_share,
    )  # fmt: skip
    cost = gpu_power_section(power, records)  # on gpu and attach; "not measured" elsewhere
    result = ProbeResult(
        rate_rps=rate_rps,
        goodput_share=good["all"]["fraction"],
        valid=behind is None,
        requests=len(records),
        ttft_p95_s=latency["all"]["ttft_s"]["p95"],
        waiting_max=max((float(r["waiting"] or 0.0) for r in sampler.rows), default=0.0),
        over_saturated=oversat,
        invalid_reason=behind,
        output_tokens_per_request=sum(ok_tokens) / len(ok_tokens) if ok_tokens else None,
        offered_rps=len(records) / arrival_s if arrival_s else None,
        resource=resource,
        directory=str(out),
        extra={
            "tokens_per_joule": cost.get("tokens_per_joule"),
            "failed": sum(not r.ok for r in records),
            "abandoned": sum(1 for r in records if (r.error or "").startswith("abandoned")),
            "stopped_early_s": watcher.at_s,
            "settled_s": round(settled_s, 1),
            "users": settings.users,
            "dispatch_delay_p95_s": dispatch["p95"],
            "duration_s": cfg.duration_s,
        },
    )
    stats: dict[str, Any] = {
        "rate_rps": rate_rps,
        "goodput": good,
        "latency": latency,
        "dispatch_delay_s": dispatch,
        "engines": engine_stats(sampler, seqs),
        "over_saturated": oversat,
        "invalid_reason": behind,
        "resource": list(result.resource or ()),
        "gpu_power": cost,
        **result.extra,
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=2, default=str))
    return result
