"""VRAM on the real card: each engine against its budget, the card's headroom, one device.

These need an NVIDIA GPU and the real stack (`pytest -m gpu`); elsewhere they skip with the
reason, and `--harness-require-gpu` turns that skip into a failure.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import pytest

from harness.telemetry.nvml import nvml_device_count, snapshot
from harness.units import GIB, gib, parse_size
from harness.vram.usage import engine_use, usage_problems

pytestmark = pytest.mark.gpu


@pytest.fixture
def gpu_snapshot(pytestconfig: pytest.Config, stack: Any) -> Any:
    from harness.pytest_require import skip_or_fail

    if nvml_device_count() == 0:
        skip_or_fail(pytestconfig, "gpu", "NVML sees no GPU on this machine")
    return snapshot(0)


def pgids(snap: Any) -> dict[int, int]:
    import os

    out = {}
    for p in snap.processes:
        with contextlib.suppress(OSError):
            out[p.pid] = os.getpgid(p.pid)
    return out


def test_engines_hold_their_budget_and_the_card_keeps_headroom(
    stack: Any, gpu_snapshot: Any, harness_settings: Any, run_record: Any
) -> None:
    from harness.vram.check import run_check

    plan = run_check(stack.spec.path, harness_settings, nvml_total=gpu_snapshot.total_bytes).plan
    uses = engine_use(gpu_snapshot, stack.engines, plan, pgids(gpu_snapshot))
    tolerance = harness_settings.typed.target("gpu").vram_tolerance
    headroom = parse_size(harness_settings.typed.target("gpu").min_headroom)
    handles = {e.name: e for e in stack.engines}
    reported = {p.pid for p in gpu_snapshot.processes if p.used_bytes is not None}
    # Absent engines and the card's headroom; the per-engine bounds are one-sided below.
    problems = usage_problems(gpu_snapshot, uses, math.inf, headroom)
    engines = {}
    for u in uses:
        memory = handles[u.service].memory
        # What an engine holds at idle depends on what ran before (vLLM frees the profiling
        # peak after graph capture, and a long prefill regrows it), so only the ceiling,
        # budget + CUDA context, is a fixed number; the floor is what it must keep allocated:
        # its weights and the KV pool it logged.
        ceiling = u.expected_bytes * (1 + tolerance)
        logged = None
        if memory and memory.kv_cache_gib is not None:
            weights = memory.model_loading_gib or memory.weights_gib or 0.0
            logged = (weights + memory.kv_cache_gib) * GIB
        floor = None if logged is None else logged * (1 - tolerance)
        engines[u.service] = {
            "used_bytes": u.used_bytes,
            "expected_bytes": u.expected_bytes,
            "ceiling_bytes": int(ceiling),
            "floor_bytes": None if floor is None else int(floor),
            "pids": list(u.pids),
            "memory": memory.to_dict() if memory else None,
        }
        if not u.pids:
            continue
        if not set(u.pids) <= reported:
            problems.append(
                f"{u.service}: NVML reports no per-process memory for pids {list(u.pids)}, so "
                "its budget cannot be checked on this driver"
            )
            continue
        if u.used_bytes > ceiling:
            problems.append(
                f"{u.service}: holds {gib(u.used_bytes)}, more than its budget + CUDA context "
                f"{gib(u.expected_bytes)} + {tolerance:.0%}"
            )
        if logged is not None and floor is not None and u.used_bytes < floor:
            problems.append(
                f"{u.service}: holds {gib(u.used_bytes)}, less than the weights + KV pool its "
                f"startup log reports ({gib(logged)}) - {tolerance:.0%}"
            )
    run_record.put(
        "acceptance",
        "gpu",
        {
            "device": gpu_snapshot.name,
            "total_bytes": gpu_snapshot.total_bytes,
            "used_bytes": gpu_snapshot.used_bytes,
            "engines": engines,
        },
    )
    assert not problems, "; ".join(problems)


def test_both_engines_on_the_same_device(
    stack: Any, gpu_snapshot: Any, harness_settings: Any
) -> None:
    from harness.vram.check import run_check

    plan = run_check(stack.spec.path, harness_settings, nvml_total=gpu_snapshot.total_bytes).plan
    devices: dict[str, set[int]] = {e.name: set() for e in stack.engines}
    for index in range(nvml_device_count()):
        snap = snapshot(index)
        for use in engine_use(snap, stack.engines, plan, pgids(snap)):
            if use.pids:
                devices[use.service].add(index)
    where = {name: sorted(d) for name, d in devices.items()}
    assert all(len(d) == 1 for d in devices.values()), f"engines by GPU index: {where}"
    assert len(set().union(*devices.values())) == 1, f"engines on different GPUs: {where}"
