"""`harness envelope`: each engine's safe envelope, prompt length x concurrency, measured cell by
cell and set beside the KV model's prediction (harness.load.envelope predicts and judges,
harness.load.envelope_probe measures, harness.report.envelope renders)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from harness.cli.common import DEFAULT_COMPOSE, check_target_inputs, examples
from harness.errors import HarnessError, InputError

ROLES = ("primary", "classifier")
# The reference ai-router's default classifier timeout (ROUTER_CLASSIFIER_TIMEOUT_S): a slower
# classification falls back, so it is the classifier's objective.
ROUTER_CLASSIFIER_TIMEOUT_S = 30.0
TWINS = ("twin", "twin-docker")


def primary_limits(settings: Any, target: str) -> tuple[dict[str, float], str]:
    """The primary's per-cell objectives: [envelope] twin_* on the twins, else the steady
    profile's local-route p95 TTFT and E2E for the target; and where they come from."""
    from harness.load.slo_table import slo_table

    knobs = settings.typed.envelope
    if target in TWINS and (knobs.twin_p95_ttft_s > 0 or knobs.twin_p95_e2e_s > 0):
        limits = {"p95_ttft_s": knobs.twin_p95_ttft_s, "p95_e2e_s": knobs.twin_p95_e2e_s}
        return {k: v for k, v in limits.items() if v > 0}, "[envelope] twin_p95_*"
    local = slo_table(settings, "steady", target).routes.get("local", {})
    limits = {k: float(local[k]) for k in ("p95_ttft_s", "p95_e2e_s") if k in local}
    return limits, f"[slo.steady.{target}.local]"


def classifier_limits(spec: Any) -> tuple[dict[str, float], str]:
    """The classifier's objective: its answer within the ai-router's classifier timeout."""
    router = next((s for s in spec.services.values() if s.role == "router"), None)
    raw = (router.environment if router is not None else {}).get("ROUTER_CLASSIFIER_TIMEOUT_S")
    try:
        timeout = float(raw) if raw else ROUTER_CLASSIFIER_TIMEOUT_S
    except ValueError:
        timeout = ROUTER_CLASSIFIER_TIMEOUT_S
    where = "ROUTER_CLASSIFIER_TIMEOUT_S" if raw else "the ai-router's default classifier timeout"
    return {"p95_e2e_s": timeout}, where


def predicted_pool(
    settings: Any, compose: Path, name: str, role: str, overrides: dict[str, int]
) -> tuple[int | None, str]:
    """The KV pool the prediction uses: a --kv-tokens what-if, else the preflight's VRAM model."""
    if name in overrides or role in overrides:
        return overrides.get(name, overrides.get(role)), "--kv-tokens what-if"
    from harness.vram.check import run_check

    try:
        plan = run_check(compose, settings).plan
        return int(plan.engine(name).kv_capacity_tokens), "the preflight's VRAM model"
    except (HarnessError, KeyError) as exc:  # a model or card the VRAM model cannot size
        return None, f"no VRAM-model prediction ({type(exc).__name__}: {exc})"


def measure_engine(
    sr: Any, role: str, settings: Any, compose: Path, overrides: dict[str, int]
) -> dict[str, Any]:
    from harness.load.envelope import (
        Pool,
        cell_doc,
        concurrency_levels,
        prompt_lengths,
    )
    from harness.load.envelope_probe import Engine, filler_ids, run_cell, wait_idle
    from harness.load.kvmodel import capacity_from_cache_config
    from harness.telemetry.prom import scrape

    stack, knobs = sr.stack, settings.typed.envelope
    handle = stack.by_role(role)
    engine_spec = stack.spec.services[handle.name].engine
    live = capacity_from_cache_config(scrape(handle.url).cache_config())
    predicted, source = predicted_pool(settings, compose, handle.name, role, overrides)
    block = (live.block_size if live else None) or engine_spec.block_size or 16
    if predicted is None:
        if live is None:
            raise InputError(f"{handle.name}: no KV pool to predict from ({source}, and no "
                             "vllm:cache_config_info)")  # fmt: skip
        predicted, source = live.tokens, f"the engine's own pool ({source})"
    seqs, mml = int(engine_spec.max_num_seqs), int(engine_spec.max_model_len or 0)
    pool = Pool(seqs, predicted, block)
    limits, judged_by = (
        primary_limits(settings, stack.target) if role == "primary"
        else classifier_limits(stack.spec)
    )  # fmt: skip
    out_tokens = knobs.output_tokens
    engine = Engine(handle.url, str(handle.model_name or engine_spec.model_name))
    engine.ids = filler_ids(engine.url, engine.model)
    cells = []
    for prompt in prompt_lengths(mml, out_tokens, knobs.prompt_steps):
        for k in concurrency_levels(seqs):
            wait_idle(engine.url)
            t0 = time.monotonic()
            measured = run_cell(engine, prompt, k, out_tokens, knobs.request_timeout_s)
            cell = cell_doc(pool, prompt, out_tokens, k, measured, limits)
            cell["wall_s"] = round(time.monotonic() - t0, 1)
            cells.append(cell)
            sr.progress(cell_line(handle.name, cell))
    return {
        "engine": handle.name, "role": role, "max_model_len": mml, "max_num_seqs": seqs,
        "kv_tokens": predicted, "kv_source": source,
        "kv_tokens_served": live.tokens if live else None, "block_size": block,
        "output_tokens": out_tokens, "limits": limits, "judged_by": judged_by,
        "prompt_lengths": sorted({c["prompt_tokens"] for c in cells}),
        "concurrency": concurrency_levels(seqs), "cells": cells,
    }  # fmt: skip


def cell_line(engine: str, c: dict[str, Any]) -> str:
    verdict = "pass" if c["passed"] else f"FAIL ({c['why']})"
    agree = "as predicted" if c["agrees"] else f"predicted {c['predicted_bound']}"
    return (
        f"{engine} {c['prompt_tokens']:,} tokens x {c['concurrency']}: {verdict}; bound "
        f"{c['measured_bound']} {agree} (running {c['running_max']:g}, waiting "
        f"{c['waiting_max']:g}, preempted {c['preemptions']:g}); {c['wall_s']:g} s"
    )


def console_lines(section: dict[str, Any]) -> list[str]:
    from harness.load.envelope import agreement

    out = []
    for e in section["engines"]:
        n, m = agreement(e["cells"])
        safe = []
        for p in e["prompt_lengths"]:
            ok = [c["concurrency"] for c in e["cells"] if c["prompt_tokens"] == p and c["passed"]]
            safe.append(f"{p:,}: {max(ok) if ok else 0}")
        binds = {
            b: sorted({(c["prompt_tokens"], c["concurrency"]) for c in e["cells"]
                       if c["measured_bound"] == b})
            for b in ("slots", "kv")
        }  # fmt: skip
        out.append(
            f"{e['engine']}: {n} of {m} cells as the KV model predicts (pool {e['kv_tokens']:,} "
            f"tokens, {e['kv_source']}); most concurrent requests within the objectives by "
            f"prompt length: {', '.join(safe)}"
        )
        for b, where in binds.items():
            if where:
                text = ", ".join(f"{p:,}x{k}" for p, k in where)
                out.append(f"  {b} bind at (prompt x concurrency): {text}")
    return out


def cmd_envelope(ns: argparse.Namespace) -> int:
    from harness.cli.stack_run import stack_run
    from harness.compose import load_stack
    from harness.config import load_settings
    from harness.load.envelope import agreement
    from harness.stack.factory import parse_kv_overrides

    settings = load_settings(ns.config)
    knobs = settings.typed.envelope
    if knobs.output_tokens < 1 or knobs.prompt_steps < 2 or not knobs.request_timeout_s > 0:
        raise InputError(
            "[envelope] output_tokens must be at least 1, prompt_steps at least 2 and "
            f"request_timeout_s above 0 (got {knobs.output_tokens}, {knobs.prompt_steps}, "
            f"{knobs.request_timeout_s:g})"
        )
    check_target_inputs(ns.target or "twin")
    spec = load_stack(ns.compose)
    overrides = parse_kv_overrides(ns.kv_tokens, spec)
    if overrides and (ns.target or "twin") != "twin":
        raise InputError("--kv-tokens is a twin what-if: the other targets' pools are the card's")
    roles = ROLES if ns.engine == "both" else (ns.engine,)
    started = time.monotonic()
    section: dict[str, Any] | None = None
    with stack_run(ns, settings, "envelope", kv_overrides=overrides) as sr:
        # The what-if the stack runs with: this command's, or the one `harness up` was given.
        pools = overrides or dict(sr.stack.kv_what_if)
        engines = [measure_engine(sr, r, settings, ns.compose, pools) for r in roles]
        what_if = {
            e["engine"]: f"{t:,} tokens"
            for e in engines
            if (t := pools.get(e["engine"], pools.get(e["role"]))) is not None
        }
        for item in ns.kv_tokens or ():
            key, value = item.split("=", 1)
            for e in engines:
                if key in (e["engine"], e["role"]):
                    what_if[e["engine"]] = value
        section = {
            "target": sr.stack.target, "profile": "envelope", "kv_what_if": what_if,
            "wall_s": round(time.monotonic() - started, 1), "engines": engines,
        }  # fmt: skip
        sr.run.record.put("envelope", "result", section)
        sr.passed = all(c["agrees"] for e in engines for c in e["cells"])
    assert section is not None
    for line in console_lines(section):
        print(line)
    print(f"reports: {', '.join(str(p) for p in sr.written)}")
    off = sum(m - n for n, m in (agreement(e["cells"]) for e in section["engines"]))
    if off:
        print(f"{off} cell(s) bound otherwise than the KV model predicts: see the report")
        return 1
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser(
        "envelope",
        help="each engine's safe envelope: prompt length x concurrency, against the KV model",
        description=(
            "Measure each engine's safe envelope: for prompt lengths from a short chat turn up "
            "to max-model-len minus the output, and concurrency from 1 to max-num-seqs + 1, "
            "send that many requests of that length to the engine at once and read its "
            "gauges. Each cell passes or fails against the objectives (the primary: [envelope] "
            "twin_p95_* on the twins, else steady's local route; the classifier: the "
            "ai-router's classifier timeout) and names what bound it: the slots "
            "(max-num-seqs) or the KV pool. The KV model predicts each cell from the "
            "preflight's pool (or a --kv-tokens what-if); the report shows both and the cells "
            "where they disagree. Exits 1 when a cell disagrees. Uses the stack `harness up` "
            "started, else brings one up and stops it afterwards."
        ),
        epilog=examples(
            "harness envelope                               # twin, both engines",
            "harness envelope --engine primary --kv-tokens primary=1.5x   # the pool binds",
        ),
    )  # fmt: skip
    p.add_argument("--target", default=None, choices=("twin", "twin-docker", "gpu", "attach"),
                   help="where the stack comes from (default: the stack `harness up` started, "
                   "else twin)")  # fmt: skip
    p.add_argument("--compose", type=Path, default=DEFAULT_COMPOSE)
    p.add_argument("--engine", default="both", choices=(*ROLES, "both"),
                   help="which engine's envelope (default: both)")  # fmt: skip
    p.add_argument("--kv-tokens", action="append", default=None, metavar="ENGINE=TOKENS",
                   help="twin what-if: an engine's KV pool, e.g. primary=1.5x")  # fmt: skip
    p.set_defaults(func=cmd_envelope)
