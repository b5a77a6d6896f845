"""`harness tune --judge capacity`: a change judged by the capacity it leaves, measured before
and after on the same shape (`harness capacity`, same profile, probes and objectives).

Capacity is noisy; its interval is the noise. The interval of a search runs from the highest
rate that held in every trial to the lowest that failed in every trial (harness.load.capacity).
A change raised the capacity when the rate it now holds is at or above one that failed before
(after.lower >= before.upper); it lowered it when a rate that held before now fails
(after.upper <= before.lower). Anything else is within the noise.

The change is kept only when acceptance passed and the capacity rose beyond the noise; a lower
capacity, or one the measurement cannot tell apart, rolls it back: a tuning change made for
capacity that does not show any is not worth the risk of keeping it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.tune import Judgement

RAISED, LOWERED, SAME = "raised", "lowered", "within the noise"


@dataclass(frozen=True)
class Capacity:
    """One `harness capacity` answer."""

    rps: float
    lower_rps: float
    upper_rps: float | None  # None: no rate failed; the capacity is at least lower_rps
    resource: str
    run_dir: Path | None = None

    @classmethod
    def from_section(cls, sec: Mapping[str, Any], run_dir: Path | None = None) -> Capacity:
        knee = sec["knee"]
        lo, hi = knee["interval_rps"]
        return cls(
            float(knee["capacity_rps"]), float(lo), None if hi is None else float(hi),
            str(knee["limiting_resource"]), run_dir,
        )  # fmt: skip

    def text(self) -> str:
        hi = "open" if self.upper_rps is None else f"{self.upper_rps:.3g}"
        return f"{self.rps:.3g} req/s (interval {self.lower_rps:.3g}-{hi}, {self.resource})"

    def doc(self) -> dict[str, Any]:
        return {
            "capacity_rps": self.rps, "interval_rps": [self.lower_rps, self.upper_rps],
            "limiting_resource": self.resource,
            "run_dir": None if self.run_dir is None else str(self.run_dir),
        }  # fmt: skip


def change(before: Capacity, after: Capacity) -> str:
    """RAISED, LOWERED or SAME (see the module docstring)."""
    if before.upper_rps is not None and after.lower_rps >= before.upper_rps:
        return RAISED
    if after.upper_rps is not None and after.upper_rps <= before.lower_rps:
        return LOWERED
    return SAME


def capacity_judgement(acceptance_passed: bool, before: Capacity, after: Capacity) -> Judgement:
    """Keep when acceptance passed and the capacity rose beyond the noise."""
    moved = change(before, after)
    lines = [
        f"capacity before the change: {before.text()}",
        f"capacity after the change:  {after.text()}",
        f"capacity {moved}",
    ]
    if not acceptance_passed:
        lines.append("acceptance failed on the changed stack: roll back whatever the capacity")
    elif moved == RAISED:
        lines.append("acceptance passed and the capacity rose beyond the noise: keep")
    elif moved == LOWERED:
        lines.append("the capacity fell beyond the noise: roll back")
    else:
        lines.append(
            "the capacity moved within the noise (the intervals overlap): roll back, a change "
            "made for capacity that shows none is not kept"
        )
    return Judgement(acceptance_passed and moved == RAISED, tuple(lines))


def tune_section(
    acceptance_passed: bool, before: Capacity, after: Capacity, j: Judgement
) -> dict[str, Any]:
    """record.json's `tune.capacity` of the verification run."""
    return {
        "judge": "capacity",
        "acceptance_passed": acceptance_passed,
        "before": before.doc(),
        "after": after.doc(),
        "change": change(before, after),
        "keep": j.keep,
        "lines": list(j.lines),
    }
