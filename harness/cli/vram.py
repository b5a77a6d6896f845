"""`harness vram`: where the GPU's memory goes, per engine of the running stack, beside NVML."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from harness.cli.common import DEFAULT_COMPOSE, examples


def _live_engines(spec: Any, settings: Any) -> list[Any]:
    """Handles of the running engines: a harness stack's (state), else the attach URLs'."""
    from harness.stack import state
    from harness.stack.base import ServiceHandle
    from harness.stack.discover import discover, docker_or_none

    doc = state.load()
    if doc is not None:
        return [
            ServiceHandle(s["name"], s["role"], s["url"], pid=s.get("pid"))
            for s in doc["services"]
            if s["role"] in ("classifier", "primary")
        ]
    client = docker_or_none()
    handles = []
    for role in ("classifier", "primary"):
        svc = spec.role(role)
        url = settings.typed.target("attach").url(role)
        found = discover(svc.name, url, spec.project, client)
        h = ServiceHandle(svc.name, role, url)
        if found is not None:
            h.container_id, h.pid = found.container_id, found.pid
        handles.append(h)
    if client is not None:
        client.close()
    return handles


def cmd_vram(ns: argparse.Namespace) -> int:
    import contextlib

    from harness.config import load_settings
    from harness.telemetry.nvml import nvml_errors, snapshot
    from harness.vram.check import run_check
    from harness.vram.table import build, render
    from harness.vram.usage import engine_use

    overrides = {"check.gpu_memory": ns.gpu_memory} if ns.gpu_memory else {}
    settings = load_settings(ns.config, overrides)
    snap, note = None, ""
    try:
        snap = snapshot(0)
    except nvml_errors() as exc:  # no library, driver or device: predictions only
        note = f"NVML sees no GPU here ({exc})"
    result = run_check(ns.compose, settings, nvml_total=snap.total_bytes if snap else None)
    uses: list[Any] = []
    if snap is not None:
        pgids = {}
        for p in snap.processes:
            with contextlib.suppress(OSError):
                pgids[p.pid] = os.getpgid(p.pid)
        uses = engine_use(snap, _live_engines(result.spec, settings), result.plan, pgids)
        missing = [u.service for u in uses if not u.pids]
        if missing:
            note = "no GPU process found for " + ", ".join(missing) + " (not running here?)"
    table = build(result, snap, uses, note)
    print(json.dumps(table.to_dict(), indent=2) if ns.json else render(table))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    vram = sub.add_parser(
        "vram", help="per container: utilization, usage, CUDA overhead, free; NVML beside it",
        description=(
            "Where does the GPU's memory go? For each engine of the running stack: its "
            "--gpu-memory-utilization budget, what it actually uses, the CUDA overhead beyond "
            "the budget, and what is left free, beside NVML's reading of the card. Without a "
            "GPU it shows the budgets of `harness check` only."
        ),
        epilog=examples("harness vram", "harness vram --gpu-memory 96GiB --json"),
    )  # fmt: skip
    vram.add_argument("--compose", type=Path, default=DEFAULT_COMPOSE)
    vram.add_argument(
        "--gpu-memory", default=None,
        help="total GPU memory, e.g. 96GiB (default: the GPU NVML sees, else [check] "
        "gpu_memory in harness.toml)",
    )  # fmt: skip
    vram.add_argument("--json", action="store_true")
    vram.set_defaults(func=cmd_vram)
