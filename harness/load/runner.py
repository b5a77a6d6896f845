"""Run one load profile: locust headless in a subprocess, the telemetry sampler beside it, then
the stats. Locust runs in its own process because gevent's monkey-patching must never reach the
harness (or pytest) process."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from harness import config_schema
from harness.errors import ConfigError
from harness.load.conversations import TURN_LOG, conversation_report, read_turns
from harness.load.goodput import goodput
from harness.load.gpu_cost import gpu_power_section
from harness.load.kvmodel import KvCapacity, capacity_from_cache_config, users_for_kv_pressure
from harness.load.processes import Distributed, run_locust
from harness.load.profiles import (
    CHAT_PROFILES,
    CONVERSATION_PROFILES,
    PROFILES,
    WATCHED,
    max_tokens_for,
    min_requests_for,
    users_for,
)
from harness.load.reconcile import reconcile
from harness.load.records import RequestRecord, read_records
from harness.load.resources import ResourceWatch, descendants, group_pids
from harness.load.routing import routing_under_load, solo_routes
from harness.load.settings import LoadSettings
from harness.load.slo_table import SloTable
from harness.load.stats import (
    client_behind,
    client_overhead_ms,
    dispatch_summary,
    engine_stats,
    kv_pool,
    latency_stats,
    route_reasons,
    throughput,
)
from harness.load.waterfall import run_waterfall
from harness.stack.base import Stack
from harness.telemetry.gpu_power import GpuPowerSampler
from harness.telemetry.prom import Scrape, scrape
from harness.telemetry.sampler import Sampler

# [load] max_dispatch_delay_p95_s when the caller gives none: the schema's default, which
# harness.toml ships.
DEFAULT_MAX_DISPATCH_DELAY_P95_S = config_schema.LoadSettings().max_dispatch_delay_p95_s


@dataclass(frozen=True)
class LoadResult:
    profile: str
    out_dir: Path
    records: list[RequestRecord]
    summary: dict[str, Any]
    # Each engine's first and last /metrics scrape: the window the summary's deltas cover.
    windows: dict[str, tuple[Scrape, Scrape]] = field(default_factory=dict)

    @property
    def error_rate(self) -> float:
        return float(self.summary["error_rate"])


# The harness's checkout (an editable install): tests/load holds the profiles' locustfiles. Not
# the compose file's folder: the owner's stack may live anywhere (`harness tune --compose
# /opt/ai-stack/docker-compose.yml`).
HARNESS_ROOT = Path(__file__).resolve().parents[2]


def locustfile(profile: str, root: Path = HARNESS_ROOT) -> Path:
    if profile not in PROFILES:
        raise ConfigError(f"unknown load profile {profile!r}; one of {', '.join(PROFILES)}")
    path = root / "tests" / "load" / f"locustfile_{profile.replace('-', '_')}.py"
    if not path.is_file():
        raise ConfigError(f"{path}: the locustfile of profile {profile!r} is missing")
    return path


def chars_per_token(stack: Stack) -> float:
    """Calibrate prompt sizing with the primary's own tokenizer; 3.0 when it cannot be asked."""
    from harness.load.prompts import filler_sentences

    sample = " ".join(filler_sentences()[:200])
    try:
        r = httpx.post(
            stack.primary.url + "/tokenize",
            json={"model": stack.primary.model_name, "prompt": sample},
            timeout=30,
        )
        r.raise_for_status()
        return len(sample) / max(1, int(r.json()["count"]))
    except (httpx.HTTPError, KeyError, ValueError):
        return 3.0


def primary_capacity(stack: Stack) -> KvCapacity | None:
    """The primary's KV capacity in tokens: `vllm:cache_config_info` (num_gpu_blocks x
    block_size) as the engine serves it now, else the KV line of its startup log."""
    primary = stack.primary
    try:
        found = capacity_from_cache_config(scrape(primary.url).cache_config())
    except httpx.HTTPError:
        found = None
    if found is not None:
        return found
    if primary.kv is not None and primary.kv.tokens > 0:
        engine = stack.spec.primary.engine
        block = engine.block_size if engine is not None else None
        return KvCapacity(primary.kv.tokens, "startup log KV line", block)
    return None


def profile_settings(
    stack: Stack,
    profile: str,
    records: Path,
    *,
    duration_s: float | None,
    users: int | None = None,
    max_tokens: int = 64,
    context_fraction: float = 0.65,
    seed: int = 1,
    max_model_len: int | None = None,
) -> LoadSettings:
    """What the profile's users need from the stack, the same for a run's own locust and for a
    worker that joins it from another machine. A stack whose search route may not be used
    (`Stack.search_allowed`) gets chat users that send only `local` prompts."""
    primary = stack.spec.primary.engine
    assert primary is not None
    max_model_len = max_model_len or primary.max_model_len or 32768
    if profile == "kv-pressure" and users is None:
        capacity = primary_capacity(stack)
        users = users_for_kv_pressure(
            primary.max_num_seqs,
            capacity.tokens if capacity else None,
            int(max_model_len * context_fraction) + max_tokens,
        )
    return LoadSettings(
        records=records,
        api_key=stack.api_key,
        classifier_url=stack.classifier.url,
        classifier_model=stack.classifier.model_name or "",
        max_model_len=max_model_len,
        max_num_seqs=primary.max_num_seqs,
        max_tokens=max_tokens,
        context_fraction=context_fraction,
        chars_per_token=chars_per_token(stack) if profile == "kv-pressure" else 3.0,
        users=users,
        duration_s=duration_s,
        pace_s=0.0,
        seed=seed,
        min_requests=min_requests_for(profile, primary.max_num_seqs),
        search_allowed=stack.search_allowed,
    )


def run_profile(
    stack: Stack,
    profile: str,
    out_root: Path,
    *,
    duration_s: float,
    users: int | None = None,
    max_tokens: int = 64,
    context_fraction: float = 0.65,
    interval_s: float = 0.25,
    seed: int = 1,
    warmup_s: float = 60.0,
    processes: int = 1,
    distributed: Distributed | None = None,
    locustfile_path: Path | None = None,
    slo: SloTable | None = None,
    max_model_len: int | None = None,
    max_dispatch_delay_p95_s: float = DEFAULT_MAX_DISPATCH_DELAY_P95_S,
) -> LoadResult:
    """`max_model_len`: the primary's, when it runs with another than the compose file's (a
    what-if restart); prompts are sized from it. `warmup_s`: for the watched profiles (soak),
    memory and descriptor growth are measured from the first sample after it. `processes` > 1:
    locust's distributed mode, that many worker processes; `distributed` for workers from other
    machines too (see harness.load.processes). `locustfile_path`: another locustfile than the
    profile's (its shape and users), for tests that change how the client behaves. `slo`: the
    profile's objectives on this target, for goodput. `max_tokens`: [load] max_tokens, scaled
    for the profile (harness.load.profiles.max_tokens_for). `max_dispatch_delay_p95_s`: [load]
    max_dispatch_delay_p95_s; a run whose client sent later than that (p95) is invalid."""
    max_tokens = max_tokens_for(profile, max_tokens)
    root = HARNESS_ROOT
    lf = locustfile_path or locustfile(profile, root)
    out = out_root / profile
    out.mkdir(parents=True, exist_ok=True)
    primary = stack.spec.primary.engine
    assert primary is not None
    settings = profile_settings(
        stack, profile, out / "requests.jsonl", duration_s=duration_s, users=users,
        max_tokens=max_tokens, context_fraction=context_fraction, seed=seed,
        max_model_len=max_model_len,
    )  # fmt: skip
    max_model_len, capacity = settings.max_model_len, primary_capacity(stack)
    dist = distributed or Distributed(processes=processes)
    engines = {s.name: s.url for s in stack.engines}
    sampler = Sampler(engines, interval_s=interval_s)
    power = GpuPowerSampler.for_target(stack.target, interval_s)
    watch = ResourceWatch(watched_groups(stack) if profile in WATCHED else {})
    from harness.progress import load_ticker

    ticker = load_ticker(profile, duration_s, sampler, settings.records, stack.primary.name)
    if not settings.search_allowed:
        from harness.progress import current
        from harness.stack.base import PAID_SEARCH_REFUSED

        current().line(f"{profile}: chat users send only local prompts: {PAID_SEARCH_REFUSED}")
    with sampler, power, watch, ticker:
        run_locust(
            lf,
            stack.entry.url,
            settings,
            out,
            cwd=root,
            timeout_s=duration_s + 600,
            distributed=dist,
        )
    sampler.save(out / "timeline.jsonl")
    power.save(out)
    records = read_records(settings.records)
    seqs = {e.name: e.engine.max_num_seqs for e in stack.spec.engines if e.engine is not None}
    summary = summarize(
        profile, records, sampler, seqs, stack.primary.name,
        max_dispatch_delay_p95_s=max_dispatch_delay_p95_s,
        solo=solo_routes_of(stack, records) if profile in CHAT_PROFILES else None,
    )  # fmt: skip
    summary["target"] = stack.target
    summary["waterfall"] = run_waterfall(records, sampler, stack)
    summary["gpu_power"] = gpu_power_section(power, records)
    summary["kv_pool"] = kv_pool(
        capacity,
        records,
        summary["engines"].get(stack.primary.name, {}).get("kv_usage_peak"),
        max_num_seqs=primary.max_num_seqs,
        max_model_len=max_model_len,
        max_tokens=max_tokens,
        predict=profile == "kv-pressure",
    )
    if profile in CONVERSATION_PROFILES:
        turns = read_turns(settings.records.with_name(TURN_LOG))
        summary["conversation"] = conversation_report(
            records, turns, sampler.first, sampler.last, max_model_len
        )
    if slo is not None:
        summary["goodput"] = goodput(slo, records)
    if profile in WATCHED:
        summary["resources"] = watch.summary(min(warmup_s, duration_s / 2))
    summary["settings"] = {
        "duration_s": duration_s,
        "users": users_for(profile, settings),
        "min_requests": settings.min_requests,
        "max_tokens": max_tokens,
        "context_fraction": context_fraction,
        "chars_per_token": round(settings.chars_per_token, 3),
        "processes": dist.processes,
        "remote_workers": dist.remote,
        "search_allowed": settings.search_allowed,
    }
    (out / "stats.json").write_text(json.dumps(summary, indent=2, default=str))
    windows = {e: (sampler.first[e], sampler.last[e]) for e in sampler.first if e in sampler.last}
    return LoadResult(profile, out, records, summary, windows)


def watched_groups(stack: Stack) -> dict[str, Callable[[], list[int]]]:
    """The router's processes (where the harness started them) and the harness's own: this
    process and its children (locust), not the stack's services."""

    def stack_pids() -> set[int]:
        return {p for s in stack.services.values() if s.pid for p in group_pids(s.pid)}

    groups: dict[str, Callable[[], list[int]]] = {
        "harness": lambda: [p for p in descendants(os.getpid()) if p not in stack_pids()]
    }
    router_pid = stack.router.pid
    if router_pid:
        groups["router"] = lambda: group_pids(router_pid)
    return groups


def reconcile_engine(records: list[RequestRecord], sampler: Sampler, engine: str) -> dict[str, Any]:
    """The requests the router sent to the primary (route local) against the primary's counters
    over the sampled window."""
    reached = [r for r in records if r.target == "router" and r.route == "local"]
    if engine not in sampler.first or engine not in sampler.last:
        return {"problems": [f"no /metrics scrape of {engine} in the window"]}
    return reconcile(reached, sampler.first[engine], sampler.last[engine])


def solo_routes_of(stack: Stack, records: Sequence[RequestRecord]) -> dict[str, str]:
    """The route each labelled prompt of the run gets alone, asked of the router after the
    load (harness.load.routing.solo_routes), keyed by the records' prompt keys."""
    from harness.load.prompts import prompt_key, prompt_routes

    sent = {r.prompt_key for r in records if r.target == "router" and r.prompt_key}
    questions = {prompt_key(q): q for q in prompt_routes()}
    wanted = {k: questions[k] for k in sent if k in questions}
    return solo_routes(stack.entry.url, stack.api_key, wanted) if wanted else {}


def summarize(
    profile: str,
    records: list[RequestRecord],
    sampler: Sampler,
    max_num_seqs: int | Mapping[str, int],
    primary: str,
    *,
    max_dispatch_delay_p95_s: float = DEFAULT_MAX_DISPATCH_DELAY_P95_S,
    solo: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The profile's summary. `valid` is false, with the reason in `invalid_reason`, when the
    client fell behind its own schedule (harness.load.stats.client_behind): its numbers then
    describe less load than the profile's, and the SLO check fails it."""
    failed = sum(not r.ok for r in records)
    dispatch = dispatch_summary(records)
    behind = client_behind(dispatch, max_dispatch_delay_p95_s)
    return {
        "profile": profile,
        "valid": behind is None,
        "invalid_reason": behind,
        "dispatch_delay_s": dispatch,
        "max_dispatch_delay_p95_s": max_dispatch_delay_p95_s,
        "requests": len(records),
        "failed": failed,
        "error_rate": failed / len(records) if records else 0.0,
        "errors": sorted({(r.error or f"HTTP {r.status}")[:120] for r in records if not r.ok}),
        "latency": latency_stats(records),
        "throughput": throughput(records),
        "engines": engine_stats(sampler, max_num_seqs),
        "client_overhead_ms": client_overhead_ms(records, sampler, primary),
        "reconciliation": {primary: reconcile_engine(records, sampler, primary)},
        "scrape_errors": sampler.errors,
        "route_reasons": route_reasons(records),
        "routing": routing_under_load(records, solo),
    }
