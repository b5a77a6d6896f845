from __future__ import annotations

from pathlib import Path

from harness.config import Settings
from harness.stack.base import ServiceHandle
from harness.telemetry.nvml import GpuProcess, GpuSnapshot
from harness.units import GIB
from harness.vram.check import run_check
from harness.vram.usage import engine_use, usage_problems

C1, C2 = "1" * 64, "2" * 64


def no_parents(pid: int) -> int | None:
    """The fake PIDs have no parents (this machine's /proc is not theirs)."""
    return None


def test_engines_matched_by_container_and_checked_against_budget(real_compose: Path) -> None:
    plan = run_check(real_compose, Settings(path=None, environ={})).plan
    router_exp = plan.engine("vllm-router").budget_bytes + plan.assumptions.cuda_context_bytes
    snap = GpuSnapshot(
        0,
        "T",
        96 * GIB,
        80 * GIB,
        16 * GIB,
        0,
        0,
        (
            GpuProcess(10, router_exp, C1),
            GpuProcess(20, 40 * GIB, C2),  # the primary holds far less than its 62 GiB budget
        ),
    )
    engines = [
        ServiceHandle("vllm-router", "classifier", "u", container_id=C1[:12]),
        ServiceHandle("vllm-primary", "primary", "u", container_id=C2[:12]),
    ]
    uses = engine_use(snap, engines, plan, {}, parent_of=no_parents)
    assert [u.pids for u in uses] == [(10,), (20,)]
    problems = usage_problems(snap, uses, 0.05, 1 * GIB)
    assert len(problems) == 1 and problems[0].startswith("vllm-primary: holds 40.00 GiB")
    assert usage_problems(snap, uses, 0.05, 20 * GIB)[-1].startswith("GPU 0: 80.00 GiB used")


def test_local_processes_matched_by_process_group(real_compose: Path) -> None:
    plan = run_check(real_compose, Settings(path=None, environ={})).plan
    snap = GpuSnapshot(0, "T", 96 * GIB, 1, 1, 0, 0, (GpuProcess(11, GIB),))
    eng = [ServiceHandle("vllm-router", "classifier", "u", pid=7)]
    assert engine_use(snap, eng, plan, {11: 7}, parent_of=no_parents)[0].pids == (11,)
    assert (
        "no GPU process found"
        in usage_problems(snap, engine_use(snap, eng, plan, {}, parent_of=no_parents), 0.05, 0)[0]
    )
