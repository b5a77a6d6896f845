"""Live VRAM preflight before starting engines on a GPU: is enough memory actually free?

`harness check` answers whether the budgets fit the card; this answers whether they fit the card
as it is now. vLLM budgets are fractions of TOTAL memory, so an engine whose budget exceeds the
free memory refuses to start ("Free memory on device ... is less than desired GPU memory
utilization"). The finding names whoever holds the memory.
"""

from __future__ import annotations

from pathlib import Path

from harness.telemetry.nvml import GpuSnapshot
from harness.units import gib
from harness.vram.plan import VramPlan
from harness.vram.rules import Finding, Severity


def _process_name(pid: int, proc: Path) -> str:
    try:
        return (proc / str(pid) / "comm").read_text().strip()
    except OSError:
        return "?"


def holders(snap: GpuSnapshot, proc: Path = Path("/proc")) -> list[str]:
    """'pid 123 (python3, container abc123def456): 12.00 GiB' for each compute process."""
    out = []
    for p in sorted(snap.processes, key=lambda p: -(p.used_bytes or 0)):
        where = f", container {p.container_id[:12]}" if p.container_id else ""
        used = gib(p.used_bytes) if p.used_bytes is not None else "unknown"
        out.append(f"pid {p.pid} ({_process_name(p.pid, proc)}{where}): {used}")
    return out


def free_memory_finding(
    plan: VramPlan, snap: GpuSnapshot, proc: Path = Path("/proc")
) -> Finding | None:
    """An error when free memory is below the engines' budgets plus their CUDA contexts."""
    need = plan.budgets_bytes + plan.contexts_bytes
    if snap.free_bytes >= need:
        return None
    held = holders(snap, proc)
    who = "; ".join(held) if held else "no compute process is listed (another container or MIG?)"
    return Finding(
        "gpu-free-memory",
        Severity.ERROR,
        f"GPU {snap.index} ({snap.name}) has {gib(snap.free_bytes)} free of "
        f"{gib(snap.total_bytes)}, the engines need {gib(need)}; held by: {who}",
        "stop the processes or containers above (for the production stack: "
        "--harness-replace-running), or attach to the running stack with --harness-target attach",
    )
