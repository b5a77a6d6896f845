"""Run records for the report tests, shaped like what the acceptance and load tests write.

`record()` is a complete, passing twin run; tests change what they need with `set_in` and
write it with `write_run`, which also writes the load timelines the HTML plots read.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

MML = 32768
ENGINES = ("vllm-router", "vllm-primary")
PROFILES = ("steady", "saturate", "kv-pressure", "ramp")
DELETE = object()  # set_in(doc, "a.b", DELETE) removes a.b


def pct(p50: float, scale: float = 1.0, n: int = 20) -> dict[str, float]:
    return {
        "p50": p50 * scale,
        "p90": p50 * 1.6 * scale,
        "p95": p50 * 1.8 * scale,
        "p99": p50 * 2.2 * scale,
        "mean": p50 * 1.1 * scale,
        "n": float(n),
    }


def latency(ttft: float, itl: float, n: int = 20) -> dict[str, Any]:
    return {
        "requests": n,
        "ok": n,
        "failed": 0,
        "ttft_s": pct(ttft, n=n),
        "ttft_from_intended_s": pct(ttft, 1.01, n=n),
        "itl_s": pct(itl, n=n * 30),
        "e2e_s": pct(ttft + 40 * itl, n=n),
        "output_tokens_per_s": pct(1 / itl, n=n),
        "output_tokens": 40 * n,
    }


def engine_load(kv_peak: float, waiting: float = 0.0, preemptions: float = 0.0) -> dict[str, Any]:
    return {
        "samples": 80,
        "kv_usage_peak": kv_peak,
        "kv_usage_above_90_s": 0.0,
        "running_max": 3.0,
        "waiting_max": waiting,
        "waiting_capacity_max": waiting,
        "preemptions": preemptions,
        "prompt_tokens": 2755.0,
        "generation_tokens": 416.0,
        "max_num_seqs": 3,
        "ttft_server_p50_s": 0.56,
        "itl_server_p50_s": 0.036,
        "ttft_server_mean_s": 0.68,
    }


def load_summary(
    profile: str, ttft_local: float = 1.7, ttft_search: float = 0.78
) -> dict[str, Any]:
    kv = 0.95 if profile == "kv-pressure" else 0.12
    waiting = 2.0 if profile in ("kv-pressure", "saturate") else 0.0
    return {
        "profile": profile,
        "requests": 40,
        "failed": 0,
        "error_rate": 0.0,
        "errors": [],
        "latency": {
            "all": latency(ttft_local, 0.03, 40),
            "local": latency(ttft_local, 0.033),
            "search": latency(ttft_search, 0.0005),
        },
        "throughput": {"requests_per_s": 0.62, "window_s": 22.4},
        "engines": {"vllm-router": engine_load(0.01), "vllm-primary": engine_load(kv, waiting)},
        "client_overhead_ms": {
            "requests": 20.0,
            "engine_requests": 20.0,
            "mean_ms": 331.4,
            "median_ms": 438.5,
        },
        "scrape_errors": 0,
        "settings": {"duration_s": 20, "users": None, "max_tokens": 64},
    }


def long_context_rows() -> list[dict[str, Any]]:
    rows = []
    for placement in ("last", "first", "spread"):
        for route in ("local", "search"):
            for tokens in (MML - 8, MML // 2, 4096):
                got = route if placement == "last" else "local"
                rows.append(
                    {
                        "placement": placement,
                        "route": route,
                        "tokens": tokens,
                        "status": 200,
                        "got": got,
                        "reason": "classified",
                        "classifier_prompt_tokens": tokens,
                    }
                )
    for over in (0, 1):
        rows.append(
            {
                "placement": "last",
                "route": "search",
                "tokens": MML + over,
                "status": 200,
                "got": "local",
                "reason": "fallback:too_long",
            }
        )
    return rows


def preflight() -> dict[str, Any]:
    gib = 2**30
    engines = {}
    for name, util, weights, kv_tokens, per_token in (
        ("vllm-router", 0.14, 6171877376, 331568, 18432),
        ("vllm-primary", 0.65, 34317947904, 232960, 131072),
    ):
        budget = int(96 * gib * util)
        engines[name] = {
            "model": "Qwen/x",
            "arch_source": "catalog",
            "gpu_memory_utilization": util,
            "budget_bytes": budget,
            "weight_bytes": weights,
            "activation_reserve_bytes": 2 * gib,
            "kv_pool_bytes": budget - weights - 2 * gib,
            "kv_cache_dtype": "fp8",
            "kv_bytes_per_token": per_token,
            "block_size": 16,
            "kv_capacity_tokens": kv_tokens,
            "max_model_len": MML,
            "max_num_seqs": 3,
            "max_concurrency_at_max_model_len": kv_tokens / MML,
            "full_sequences": kv_tokens // MML,
        }
    budgets = sum(e["budget_bytes"] for e in engines.values())
    return {
        "compose": "infra/docker-compose.yml",
        "compose_sha256": "ea965b03eff18512d6e11a9551de11668d190a38a66d0d666b9b014390f2eaaf",
        "start_order": ["vllm-router", "vllm-primary", "ai-router", "traefik", "cloudflared"],
        "gpu": {
            "total_bytes": 96 * gib,
            "total_source": "harness.toml",
            "cuda_context_bytes_per_engine": 545259520,
            "utilization_sum": 0.79,
            "budgets_bytes": budgets,
            "headroom_bytes": 96 * gib - budgets - 2 * 545259520,
        },
        "engines": engines,
        "findings": [
            {
                "rule": "kv-fp8",
                "severity": "info",
                "message": "fp8 KV <b>cache</b>",
                "fix": "none",
                "service": "vllm-primary",
            }
        ],
        "ok": True,
    }


def record(run_id: str = "20261126T062715Z-twin", **top: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema_version": 1,
        "harness_version": "0.1.0",
        "run_id": run_id,
        "target": "twin",
        "started_at": "2026-11-26T06:27:15Z",
        "finished_at": "2026-11-26T06:40:02Z",
        "status": "passed",
        "stack": {
            "services": {
                name: {
                    "role": role,
                    "url": f"http://127.0.0.1:{port}",
                    "model": model,
                    "time_to_healthy_s": 41.2,
                    "kv": None
                    if model is None
                    else {
                        "device": "cpu",
                        "tokens": 98304,
                        "max_model_len": MML,
                        "max_concurrency": 3.0,
                        "available_gib": 1.5,
                    },
                    "log": f"reports/runs/{run_id}/logs/{name}.log",
                }
                for name, role, port, model in (
                    ("vllm-router", "classifier", 41001, "twin-classifier"),
                    ("vllm-primary", "primary", 41002, "twin-primary"),
                    ("fake-xai", "xai", 41003, None),
                    ("ai-router", "router", 41004, None),
                )
            },
            "notes": ["twin: KV capacity from the GPU plan"],
        },
        "preflight": preflight(),
        "startup": {},
        "acceptance": {
            "routing": {
                "scored": 60,
                "correct": 58,
                "accuracy": 0.9667,
                "per_route": {
                    "local": {"precision": 0.9667, "recall": 0.9667},
                    "search": {"precision": 0.9667, "recall": 0.9667},
                },
                "confusion": {
                    "local": {"local": 29, "search": 1, "other": 0},
                    "search": {"local": 1, "search": 29, "other": 0},
                },
                "either": {"local": 3, "search": 2},
                "fallbacks": 0,
                "misses": [
                    {"id": "r-017", "expected": "local", "got": "search", "reason": "classified"}
                ],
            },
            "long_context": long_context_rows(),
            "kv_capacity": {
                e: {
                    "log_tokens": t,
                    "log_max_concurrency": t / MML,
                    "predicted_tokens": p,
                    "prediction_error_pct": round(100 * (t - p) / p, 2),
                    "cache_config_info": {"block_size": "16", "cache_dtype": "fp8"},
                }
                for e, t, p in (("vllm-router", 331200, 331568), ("vllm-primary", 232448, 232960))
            },
            "max_model_len": {"vllm-router": MML, "vllm-primary": MML},
            "determinism": {"prompts": 20, "repeats": 5, "unstable": {}},
            "xai_request": {"tools": ["web_search", "x_search"], "max_output_tokens": 4096},
        },
        "load": {p: load_summary(p) for p in PROFILES},
        "telemetry": {},
        "environment": {"python": "3.11.2", "infra_commit": "abc1234"},
        "timings": {"acceptance_s": 312.5, "load_s": 190.0},
    }
    doc.update(top)
    return doc


def set_in(doc: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A deep copy of `doc` with `a.b.c` set (or deleted, for value=DELETE)."""
    out = copy.deepcopy(doc)
    *parents, last = dotted.split(".")
    node = out
    for p in parents:
        node = node[p]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return out


def timeline(max_num_seqs: int = 3, seconds: float = 20.0) -> list[dict[str, Any]]:
    rows = []
    t0 = 1795674984.8
    for i in range(int(seconds / 0.25)):
        t = t0 + i * 0.25
        for e in ENGINES:
            load = 0.5 + 0.5 * math.sin(i / 9)
            running = min(max_num_seqs, round(load * 4))
            waiting = max(0, round(load * 5) - max_num_seqs)
            rows.append(
                {
                    "t": round(t, 3),
                    "engine": e,
                    "kv_usage": 0.9 * load,
                    "running": float(running),
                    "waiting": float(waiting),
                    "waiting_capacity": float(waiting),
                    "waiting_deferred": 0.0,
                    "preemptions": 0.0,
                    "prompt_tokens": 100.0 * i,
                    "generation_tokens": 40.0 * i,
                }
            )
    return rows


def write_run(root: Path, doc: dict[str, Any], *, timelines: bool = True) -> Path:
    """`<root>/runs/<run_id>/record.json` (+ load/<profile>/timeline.jsonl); the run dir."""
    run_dir = root / "runs" / doc["run_id"]
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    (run_dir / "record.json").write_text(json.dumps(doc, indent=2))
    if timelines:
        for profile in doc.get("load", {}):
            d = run_dir / "load" / profile
            d.mkdir(parents=True, exist_ok=True)
            (d / "timeline.jsonl").write_text("\n".join(json.dumps(r) for r in timeline()) + "\n")
    return run_dir
