"""Run one load profile: locust headless in a subprocess, the telemetry sampler beside it, then
the stats. Locust runs in its own process because gevent's monkey-patching must never reach the
harness (or pytest) process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from harness.errors import ConfigError, StackError
from harness.load.kvmodel import KvCapacity, capacity_from_cache_config, users_for_kv_pressure
from harness.load.profiles import PROFILES, WATCHED, min_requests_for, users_for
from harness.load.records import RequestRecord, read_records
from harness.load.resources import ResourceWatch, descendants, group_pids
from harness.load.settings import LoadSettings
from harness.load.stats import (
    client_overhead_ms,
    engine_stats,
    kv_pool,
    latency_stats,
    route_reasons,
    throughput,
)
from harness.spec.services import is_secret_name
from harness.stack.base import Stack
from harness.stack.procs import stop_group
from harness.telemetry.prom import scrape
from harness.telemetry.sampler import Sampler


@dataclass(frozen=True)
class LoadResult:
    profile: str
    out_dir: Path
    records: list[RequestRecord]
    summary: dict[str, Any]

    @property
    def error_rate(self) -> float:
        return float(self.summary["error_rate"])


def locustfile(profile: str, root: Path) -> Path:
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


def run_locust(
    lf: Path,
    host: str,
    settings: LoadSettings,
    out: Path,
    *,
    cwd: Path,
    timeout_s: float,
    users: int | None = None,
    run_time_s: float | None = None,
) -> None:
    """locust headless in its own process group; its CSV, JSON and log go to `out`.

    Profiles bring their own LoadTestShape; plain locustfiles get `users` and `run_time_s`.
    """
    env = {k: v for k, v in os.environ.items() if not is_secret_name(k)}
    env.update(settings.to_env())
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(lf),
        "--headless",
        "--host",
        host,
        "--csv",
        str(out / "locust"),
        "--json-file",
        str(out / "locust"),
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--logfile",
        str(out / "locust.log"),
        "--stop-timeout",
        "300",
        "--exit-code-on-error",
        "0",
    ]
    if users is not None:
        argv += ["-u", str(users), "-r", str(users)]
    if run_time_s is not None:
        argv += ["--run-time", f"{int(run_time_s)}s"]
    with (out / "locust.out").open("wb") as log:
        proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            rc = proc.wait(timeout=timeout_s)
        except BaseException:
            stop_group(proc.pid)
            raise
    if rc != 0:
        raise StackError(f"locust exited with {rc}; see {out / 'locust.out'}")


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
) -> LoadResult:
    """`warmup_s`: for the watched profiles (soak), memory and descriptor growth are measured
    from the first sample after it."""
    root = stack.spec.path.resolve().parents[1]
    lf = locustfile(profile, root)
    out = out_root / profile
    out.mkdir(parents=True, exist_ok=True)
    primary = stack.spec.primary.engine
    assert primary is not None
    max_model_len = primary.max_model_len or 32768
    capacity = primary_capacity(stack)
    if profile == "kv-pressure" and users is None:
        users = users_for_kv_pressure(
            primary.max_num_seqs,
            capacity.tokens if capacity else None,
            int(max_model_len * context_fraction) + max_tokens,
        )
    settings = LoadSettings(
        records=out / "requests.jsonl",
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
    )
    engines = {s.name: s.url for s in stack.engines}
    sampler = Sampler(engines, interval_s=interval_s)
    watch = ResourceWatch(watched_groups(stack) if profile in WATCHED else {})
    from harness.progress import load_ticker

    ticker = load_ticker(profile, duration_s, sampler, settings.records, stack.primary.name)
    with sampler, watch, ticker:
        run_locust(lf, stack.router.url, settings, out, cwd=root, timeout_s=duration_s + 600)
    sampler.save(out / "timeline.jsonl")
    records = read_records(settings.records)
    summary = summarize(profile, records, sampler, primary.max_num_seqs, stack.primary.name)
    summary["target"] = stack.target
    summary["kv_pool"] = kv_pool(
        capacity,
        records,
        summary["engines"].get(stack.primary.name, {}).get("kv_usage_peak"),
        max_num_seqs=primary.max_num_seqs,
        max_model_len=max_model_len,
        max_tokens=max_tokens,
        predict=profile == "kv-pressure",
    )
    if profile in WATCHED:
        summary["resources"] = watch.summary(min(warmup_s, duration_s / 2))
    summary["settings"] = {
        "duration_s": duration_s,
        "users": users_for(profile, settings),
        "min_requests": settings.min_requests,
        "max_tokens": max_tokens,
        "context_fraction": context_fraction,
        "chars_per_token": round(settings.chars_per_token, 3),
    }
    (out / "stats.json").write_text(json.dumps(summary, indent=2, default=str))
    return LoadResult(profile, out, records, summary)


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


def summarize(
    profile: str,
    records: list[RequestRecord],
    sampler: Sampler,
    max_num_seqs: int,
    primary: str,
) -> dict[str, Any]:
    failed = sum(not r.ok for r in records)
    return {
        "profile": profile,
        "requests": len(records),
        "failed": failed,
        "error_rate": failed / len(records) if records else 0.0,
        "errors": sorted({(r.error or f"HTTP {r.status}")[:120] for r in records if not r.ok}),
        "latency": latency_stats(records),
        "throughput": throughput(records),
        "engines": engine_stats(sampler, max_num_seqs),
        "client_overhead_ms": client_overhead_ms(records, sampler, primary),
        "scrape_errors": sampler.errors,
        "route_reasons": route_reasons(records),
    }
