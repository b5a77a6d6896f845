"""`harness tune --judge capacity`: a change judged by the capacity it leaves, measured before
and after on the same shape (`harness capacity`, same profile, probes and objectives).

Capacity is noisy; its interval is the noise. The interval of a search runs from the highest
rate that held in every trial to the lowest that failed in every trial (harness.load.capacity).
A change raised the capacity when the rate it now holds is at or above one that failed before
(after.lower >= before.upper); it lowered it when a rate that held before now fails
(after.upper <= before.lower). Each of the two rates that decide must have been probed at least
twice (MIN_TRIALS): one probe on a shared machine holds or fails on a transient (a tune on a
2-core machine once read 1.07 req/s before and 2.36 after taking the primary from 3 slots to 1,
the first search beside another process). Anything else is within the noise.

The change is kept only when acceptance passed and the capacity rose beyond the noise; a lower
capacity, or one the measurement cannot tell apart, rolls it back: a tuning change made for
capacity that does not show any is not worth the risk of keeping it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.tune import Judgement

RAISED, LOWERED, SAME = "raised", "lowered", "within the noise"
MIN_TRIALS = 2


@dataclass(frozen=True)
class Capacity:
    """One `harness capacity` answer."""

    rps: float
    lower_rps: float
    upper_rps: float | None  # None: no rate failed; the capacity is at least lower_rps
    resource: str
    run_dir: Path | None = None
    lower_trials: int = 1  # probes at lower_rps (all held)
    upper_trials: int = 1  # probes at upper_rps (all failed)

    @classmethod
    def from_section(cls, sec: Mapping[str, Any], run_dir: Path | None = None) -> Capacity:
        knee = sec["knee"]
        lo, hi = knee["interval_rps"]
        rates = [float(p["rate_rps"]) for p in sec.get("probes", ())]

        def trials(rate: float | None) -> int:
            return 0 if rate is None else sum(1 for r in rates if math.isclose(r, rate))

        return cls(
            float(knee["capacity_rps"]), float(lo), None if hi is None else float(hi),
            str(knee["limiting_resource"]), run_dir, trials(float(lo)),
            trials(None if hi is None else float(hi)),
        )  # fmt: skip

    def text(self) -> str:
        hi = "open" if self.upper_rps is None else f"{self.upper_rps:.3g}"
        n = f"{self.lower_trials}" + ("" if self.upper_rps is None else f" and {self.upper_trials}")
        return (
            f"{self.rps:.3g} req/s (interval {self.lower_rps:.3g}-{hi}, {self.resource}; "
            f"{n} trial(s) at its ends)"
        )

    def doc(self) -> dict[str, Any]:
        return {
            "capacity_rps": self.rps, "interval_rps": [self.lower_rps, self.upper_rps],
            "limiting_resource": self.resource,
            "trials": [self.lower_trials, self.upper_trials],
            "run_dir": None if self.run_dir is None else str(self.run_dir),
        }  # fmt: skip


def change(before: Capacity, after: Capacity) -> str:
    """RAISED, LOWERED or SAME (see the module docstring)."""
    if (
        before.upper_rps is not None
        and after.lower_rps >= before.upper_rps
        and min(before.upper_trials, after.lower_trials) >= MIN_TRIALS
    ):
        return RAISED
    if (
        after.upper_rps is not None
        and after.upper_rps <= before.lower_rps
        and min(after.upper_trials, before.lower_trials) >= MIN_TRIALS
    ):
        return LOWERED
    return SAME


def unconfirmed(before: Capacity, after: Capacity) -> bool:
    """The intervals alone would say raised or lowered, but a deciding rate had one trial."""
    apart = (before.upper_rps is not None and after.lower_rps >= before.upper_rps) or (
        after.upper_rps is not None and after.upper_rps <= before.lower_rps
    )
    return apart and change(before, after) == SAME


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
    elif unconfirmed(before, after):
        lines.append(
            f"the intervals are apart, but a rate that decides it was probed fewer than "
            f"{MIN_TRIALS} times (the searches repeat [capacity] repeat_probes rates near "
            "their knee: raise it, and --capacity-probes with it, so that both ends are "
            "repeated): roll back, a change made for capacity that shows none beyond the noise "
            "is not kept"
        )
    else:
        lines.append(
            "the capacity moved within the noise (the intervals overlap): roll back, a change "
            "made for capacity that shows none is not kept"
        )
    return Judgement(acceptance_passed and moved == RAISED, tuple(lines))


def tune_section(
    acceptance_passed: bool,
    before: Capacity,
    after: Capacity,
    j: Judgement,
    changes: Sequence[str] = (),
) -> dict[str, Any]:
    """record.json's `tune.capacity` of the verification run; `changes` as given to tune."""
    return {
        "judge": "capacity",
        "changes": list(changes),
        "acceptance_passed": acceptance_passed,
        "before": before.doc(),
        "after": after.doc(),
        "change": change(before, after),
        "keep": j.keep,
        "lines": list(j.lines),
    }
