"""Records of `harness capacity` and `harness envelope` runs, for the report tests.

The envelope is the twin's shape: both engines at max-model-len 32768 and max-num-seqs 3, the
primary's KV pool under a 1.5x what-if (49,152 tokens), so the slots bind at concurrency 4 for
short prompts and the pool binds at 3 for 16k-token prompts and at 2 for the longest. One cell
disagrees with the prediction: at 16,384 tokens x 2 the pool bound (a preemption) where the KV
model predicted room for both.
"""

from __future__ import annotations

import copy
from typing import Any

import report_fixtures as fixtures

MML = 32768
DISAGREES = (16384, 2)  # the primary's cell where measured and predicted differ


def capacity_result(
    capacity_rps: float,
    interval: tuple[float, float | None],
    resource: str = "primary slots",
    profile: str = "steady",
) -> dict[str, Any]:
    """`capacity.result` as harness.report.capacity.capacity_section writes it."""
    lo, hi = interval
    probes = [
        (1, "grow", lo / 2, 1.0, 0.9, True),
        (2, "grow", lo, 0.97, 1.6, True),
        (3, "grow", (hi or lo * 2), 0.6, 4.8, False),
        (4, "bisect", capacity_rps, 0.95, 2.2, True),
    ]
    return {
        "profile": profile,
        "target": "twin",
        "goodput_share": 0.95,
        "probe_s": 20.0,
        "request_cut_s": 7.2,
        "max_probes": 8,
        "ttft_limit_s": 2.3,
        "probes": [
            {
                "n": n,
                "phase": phase,
                "rate_rps": rate,
                "offered_rps": rate * 0.98,
                "requests": int(rate * 20),
                "goodput_share": share,
                "ttft_p95_s": ttft,
                "waiting_max": 0.0 if holds else 4.0,
                "valid": True,
                "invalid_reason": None,
                "over_saturated": None if holds else "queue grew 0.4/s at vllm-primary",
                "holds": holds,
                "resource": resource,
                "dir": f"load/probe-{n:02d}",
            }
            for n, phase, rate, share, ttft, holds in probes
        ],
        "knee": {
            "capacity_rps": capacity_rps,
            "capacity_tok_s": capacity_rps * 40.0,
            "interval_rps": [lo, hi],
            "interval_tok_s": [lo * 40.0, None if hi is None else hi * 40.0],
            "limiting_resource": resource,
            "why": "running 3 of max-num-seqs 3, waiting by reason capacity 0",
        },
        "stopped": "bracketed",
        "wall_s": 212.4,
    }


def capacity_record(
    run_id: str, capacity_rps: float, interval: tuple[float, float | None], **kw: Any
) -> dict[str, Any]:
    """A finished `harness capacity` run: no acceptance, no load, the capacity section."""
    day = run_id[6:8]
    return fixtures.record(
        run_id,
        started_at=f"2026-11-{day}T05:00:00Z",
        finished_at=f"2026-11-{day}T05:04:00Z",
        acceptance={},
        load={},
        capacity={"result": capacity_result(capacity_rps, interval, **kw)},
    )


def _fits(kv_tokens: int, block: int, tokens: int) -> int:
    """Sequences of `tokens` tokens the pool holds, whole blocks each."""
    return (kv_tokens // block) // -(-tokens // block)


def _grid(
    engine: str,
    role: str,
    kv_tokens: int,
    output: int,
    prompts: list[int],
    limits: dict[str, float],
    ttft_alone: dict[int, float],
    decode_s: float,
) -> dict[str, Any]:
    seqs, block = 3, 16
    cells = []
    for p in prompts:
        fits = _fits(kv_tokens, block, p + output)
        for k in (1, 2, 3, 4):
            running = min(k, seqs, fits)
            bound = "none" if k == running else ("kv" if fits < seqs else "slots")
            ttft = ttft_alone[p] * (1 + 0.15 * (running - 1))
            e2e = ttft + decode_s
            if k > running:  # the queued request waits for one to finish
                ttft, e2e = ttft + e2e, e2e * 2
            why = [
                f"p95 {name} {ttft if name == 'TTFT' else e2e:.1f} s > {limit} s"
                for key, name in (("p95_ttft_s", "TTFT"), ("p95_e2e_s", "E2E"))
                if (limit := limits.get(key)) is not None
                and (ttft if name == "TTFT" else e2e) > limit
            ]
            cells.append(
                {
                    "prompt_tokens": p, "concurrency": k, "passed": not why,
                    "predicted_bound": bound, "measured_bound": bound, "agrees": True,
                    "predicted_running": running, "running_max": float(running),
                    "waiting_max": float(k - running), "preemptions": 0.0,
                    "ttft_p95_s": round(ttft, 2), "e2e_p95_s": round(e2e, 2), "errors": 0,
                    "why": "; ".join(why) or None,
                }
            )  # fmt: skip
    return {
        "engine": engine, "role": role, "max_model_len": MML, "max_num_seqs": seqs,
        "kv_tokens": kv_tokens, "block_size": block, "output_tokens": output, "limits": limits,
        "prompt_lengths": prompts, "concurrency": [1, 2, 3, 4], "cells": cells,
    }  # fmt: skip


def envelope_result() -> dict[str, Any]:
    """`envelope.result`: the primary's grid and the classifier's."""
    primary = _grid(
        "vllm-primary", "primary", 49152, 32, [256, 8192, 16384, MML - 64],
        {"p95_ttft_s": 2.3, "p95_e2e_s": 3.6},
        {256: 0.12, 8192: 0.6, 16384: 1.1, MML - 64: 1.7}, 1.8,
    )  # fmt: skip
    for c in primary["cells"]:
        if (c["prompt_tokens"], c["concurrency"]) == DISAGREES:
            c.update(
                measured_bound="kv", agrees=False, passed=False, running_max=1.0,
                waiting_max=1.0, preemptions=1.0, ttft_p95_s=3.1, e2e_p95_s=4.2,
                why="p95 TTFT 3.1 s > 2.3 s; p95 E2E 4.2 s > 3.6 s",
            )  # fmt: skip
    classifier = _grid(
        "vllm-router", "classifier", 98304, 1, [256, 8192, 16384, MML - 1],
        {"p95_ttft_s": 1.3}, {256: 0.03, 8192: 0.25, 16384: 0.5, MML - 1: 1.0}, 0.0,
    )  # fmt: skip
    return {
        "target": "twin",
        "profile": "envelope",
        "wall_s": 418.6,
        "kv_what_if": {"vllm-primary": "1.5x"},
        "engines": [primary, classifier],
    }


def envelope_record(run_id: str = "20261126T062715Z-twin", **top: Any) -> dict[str, Any]:
    """The full report fixture with an envelope section (and whatever `top` adds)."""
    doc = fixtures.record(run_id, **top)
    doc["envelope"] = {"result": copy.deepcopy(envelope_result())}
    return doc
