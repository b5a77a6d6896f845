"""`harness vram`: the card's memory per container, as the stack's README tabulates it, with
NVML's measurement beside each prediction where a GPU is visible.

Per engine the prediction is its budget (ceil(total x --gpu-memory-utilization): what vLLM
holds once loaded) plus one CUDA context outside it; what is left of the card is free. The
measured figure is the NVML memory of the engine's processes (found as `harness.vram.usage`
finds them), and the card's own used and free memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.telemetry.nvml import GpuSnapshot
from harness.units import gib
from harness.vram.check import CheckResult
from harness.vram.usage import EngineUse


@dataclass(frozen=True)
class VramRow:
    container: str
    utilization: float | None
    usage_bytes: int | None  # the budget: what the engine holds once loaded
    context_bytes: int | None
    measured_bytes: int | None = None

    @property
    def predicted_bytes(self) -> int | None:
        if self.usage_bytes is None:
            return None
        return self.usage_bytes + (self.context_bytes or 0)


@dataclass(frozen=True)
class VramTable:
    card: str
    total_bytes: int
    total_source: str
    rows: tuple[VramRow, ...]
    free_bytes: int  # predicted
    measured: bool
    measured_used_bytes: int | None = None
    measured_free_bytes: int | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "card": self.card,
            "total_bytes": self.total_bytes,
            "total_source": self.total_source,
            "measured": self.measured,
            "rows": [
                {
                    "container": r.container,
                    "gpu_memory_utilization": r.utilization,
                    "approx_usage_bytes": r.usage_bytes,
                    "cuda_overhead_bytes": r.context_bytes,
                    "predicted_bytes": r.predicted_bytes,
                    "measured_bytes": r.measured_bytes,
                }
                for r in self.rows
            ],
            "free_bytes": self.free_bytes,
            "measured_used_bytes": self.measured_used_bytes,
            "measured_free_bytes": self.measured_free_bytes,
            "note": self.note,
        }


def build(
    result: CheckResult,
    snap: GpuSnapshot | None = None,
    uses: Sequence[EngineUse] = (),
    note: str = "",
) -> VramTable:
    """The table from `harness check`'s plan; with `snap`, NVML's figures beside it (`uses`:
    each engine's processes on that card)."""
    plan = result.plan
    context = plan.assumptions.cuda_context_bytes
    measured = {u.service: u.used_bytes for u in uses if u.pids}
    rows = []
    for e in plan.engines:
        svc = result.spec.services[e.service]
        rows.append(
            VramRow(
                svc.container_name or svc.name,
                e.utilization,
                e.budget_bytes,
                context,
                measured.get(e.service) if snap is not None else None,
            )
        )
    if snap is not None:
        others = snap.used_bytes - sum(measured.values())
        rows.append(VramRow("other processes and the driver", None, None, None, others))
    return VramTable(
        card=snap.name if snap is not None else "no GPU visible",
        total_bytes=plan.assumptions.total_bytes,
        total_source=plan.assumptions.total_source,
        rows=tuple(rows),
        free_bytes=plan.headroom_bytes,
        measured=snap is not None,
        measured_used_bytes=None if snap is None else snap.used_bytes,
        measured_free_bytes=None if snap is None else snap.free_bytes,
        note=note,
    )


def _g(v: int | None) -> str:
    return "-" if v is None else gib(v)


def render(t: VramTable) -> str:
    head = ["container", "utilization", "approx usage", "CUDA overhead", "predicted"]
    if t.measured:
        head += ["measured (NVML)", "off"]
    body = []
    for r in t.rows:
        row = [
            r.container,
            "-" if r.utilization is None else f"{r.utilization:g}",
            _g(r.usage_bytes),
            _g(r.context_bytes),
            _g(r.predicted_bytes),
        ]
        if t.measured:
            off = "-"
            if r.measured_bytes is not None and r.predicted_bytes:
                off = f"{(r.measured_bytes - r.predicted_bytes) / r.predicted_bytes:+.1%}"
            row += [_g(r.measured_bytes), off]
        body.append(row)
    utils = [r.utilization for r in t.rows if r.utilization is not None]
    predicted = sum(r.predicted_bytes or 0 for r in t.rows)
    total = ["total", f"{sum(utils):g}", _g(sum(r.usage_bytes or 0 for r in t.rows)),
             _g(sum(r.context_bytes or 0 for r in t.rows)), _g(predicted)]  # fmt: skip
    free = ["free", "", "", "", _g(t.free_bytes)]
    if t.measured:
        total += [_g(t.measured_used_bytes), ""]
        free += [_g(t.measured_free_bytes), ""]
    table = [head, *body, total, free]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    lines = [f"GPU: {t.card}, {gib(t.total_bytes)} total ({t.total_source})"]
    for n, cells in enumerate(table):
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    if not t.measured:
        lines.append("predictions only: " + (t.note or "NVML sees no GPU on this machine"))
    elif t.note:
        lines.append(t.note)
    return "\n".join(lines)
