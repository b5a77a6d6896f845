"""What each engine really holds on the GPU, against what the VRAM model gave it.

NVML lists compute processes by host PID; each is mapped to its engine through the engine's
container, its process group (local processes), or its parents: vLLM's EngineCore, which holds
the memory, is a child of the process an attached stack's handle names (the container's main
process, or the one listening on the engine's port). An engine's use is the sum over its
processes, compared with its budget plus one CUDA context.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from harness.telemetry.nvml import GpuProcess, GpuSnapshot
from harness.telemetry.procfs import parent_of as proc_parent
from harness.units import gib
from harness.vram.plan import VramPlan


class EngineProcess(Protocol):
    """What identifies an engine's processes: a stack's service handle has these."""

    @property
    def name(self) -> str: ...

    @property
    def container_id(self) -> str | None: ...

    @property
    def pid(self) -> int | None: ...


@dataclass(frozen=True)
class EngineUse:
    service: str
    used_bytes: int
    expected_bytes: int  # budget + one CUDA context
    pids: tuple[int, ...]

    @property
    def error_frac(self) -> float:
        return (self.used_bytes - self.expected_bytes) / self.expected_bytes


def ancestors(pid: int, parent_of: Callable[[int], int | None], limit: int = 64) -> list[int]:
    """The parent, grandparent, ... of `pid`, up to init."""
    chain: list[int] = []
    while len(chain) < limit:
        parent = parent_of(pid)
        if not parent or parent in chain or parent == pid:
            break
        chain.append(parent)
        pid = parent
    return chain


def _owned(p: GpuProcess, eng: EngineProcess, pgid_of: dict[int, int], lineage: list[int]) -> bool:
    if eng.container_id and p.container_id and p.container_id.startswith(eng.container_id):
        return True
    # PID 1 (init) would own every process on the machine: never a service's process.
    if eng.pid is None or eng.pid <= 1:
        return False
    return pgid_of.get(p.pid) == eng.pid or p.pid == eng.pid or eng.pid in lineage


def engine_use(
    snap: GpuSnapshot,
    engines: Iterable[EngineProcess],
    plan: VramPlan,
    pgid_of: dict[int, int],
    parent_of: Callable[[int], int | None] | None = None,
) -> list[EngineUse]:
    """Per engine: NVML memory of the processes in its container or process group, or below
    its process (`parent_of`: a PID's parent, /proc by default)."""
    parents = parent_of or proc_parent
    lineage = {p.pid: ancestors(p.pid, parents) for p in snap.processes}
    out = []
    for eng in engines:
        mine = [p for p in snap.processes if _owned(p, eng, pgid_of, lineage[p.pid])]
        budget = plan.engine(eng.name).budget_bytes + plan.assumptions.cuda_context_bytes
        out.append(
            EngineUse(
                eng.name, sum(p.used_bytes or 0 for p in mine), budget, tuple(p.pid for p in mine)
            )
        )
    return out


def usage_problems(
    snap: GpuSnapshot, uses: list[EngineUse], tolerance: float, headroom_bytes: int
) -> list[str]:
    """Engines outside budget + context (by `tolerance` of it), absent engines, and a card
    with less than `headroom_bytes` left."""
    bad = []
    for u in uses:
        if not u.pids:
            bad.append(f"{u.service}: no GPU process found for it on GPU {snap.index}")
        elif abs(u.error_frac) > tolerance:
            bad.append(
                f"{u.service}: holds {gib(u.used_bytes)}, expected {gib(u.expected_bytes)} "
                f"(budget + CUDA context) within {tolerance:.0%}; off by {u.error_frac:+.1%}"
            )
    if snap.total_bytes - snap.used_bytes < headroom_bytes:
        bad.append(
            f"GPU {snap.index}: {gib(snap.used_bytes)} used of {gib(snap.total_bytes)} leaves less "
            f"than the {gib(headroom_bytes)} headroom asked for"
        )
    return bad
