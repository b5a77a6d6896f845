"""`harness tune --judge capacity`: `harness capacity` before the change is written and after it
was verified, on the same shape (profile, probes, objectives), in a child process each, like the
verification's own run; harness.tune_capacity decides."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import StackError


def harness_command() -> list[str]:
    """This harness's command, beside this interpreter (else on PATH), as a child process."""
    beside = Path(sys.executable).with_name("harness")
    return [str(beside) if beside.is_file() else (shutil.which("harness") or "harness")]


@dataclass
class CapacityJudge:
    compose: Path
    target: str  # the capacity run's: twin, or attach (the GPU stack after stackctl.sh)
    config: Path | None = None
    max_probes: int | None = None
    probe_s: float | None = None
    before: Any = field(default=None, init=False)  # harness.tune_capacity.Capacity

    def argv(self) -> list[str]:
        out = [*harness_command()]
        if self.config is not None:
            out += ["--config", str(self.config)]
        out += ["capacity", "--target", self.target, "--compose", str(self.compose)]
        if self.max_probes is not None:
            out += ["--max-probes", str(self.max_probes)]
        if self.probe_s is not None:
            out += ["--probe", f"{self.probe_s:g}s"]
        return out

    def measure(self, when: str) -> Any:
        """One `harness capacity` run; its answer (harness.tune_capacity.Capacity)."""
        from harness.report.run_dir import reports_root
        from harness.tune_capacity import Capacity

        runs = reports_root() / "runs"
        seen = set(runs.glob("*")) if runs.is_dir() else set()
        print(f"tune: measuring capacity {when}: harness {' '.join(self.argv()[1:])}", flush=True)
        proc = subprocess.run(self.argv(), env=os.environ.copy())
        made = sorted(p for p in runs.glob("*-capacity") if p not in seen) if runs.is_dir() else []
        if proc.returncode != 0 or not made:
            raise StackError(
                f"harness capacity {when} failed (exit code {proc.returncode}); "
                f"{'its run: ' + str(made[-1]) if made else 'no run was recorded'}"
            )
        doc = json.loads((made[-1] / "record.json").read_text())
        return Capacity.from_section(doc["capacity"]["result"], made[-1])

    def measure_before(self) -> None:
        self.before = self.measure("before the change")

    def decide(self, code: int, run_dir: Path | None) -> Any:
        """The verdict: acceptance (the verification's exit code) and capacity after against
        before; written into the verification run's record as `tune.capacity`."""
        from harness.tune_capacity import capacity_judgement, tune_section

        after = self.measure("after the change")
        passed = code == 0
        verdict = capacity_judgement(passed, self.before, after)
        if run_dir is not None and (run_dir / "record.json").is_file():
            from harness.report.finalize import finalize_run

            path = run_dir / "record.json"
            doc = json.loads(path.read_text())
            doc.setdefault("tune", {})["capacity"] = tune_section(
                passed, self.before, after, verdict
            )
            path.write_text(json.dumps(doc, indent=2))
            finalize_run(run_dir)
        return verdict


def add_judge_arguments(tune: argparse.ArgumentParser) -> None:
    from harness.cli.common import positive_int, seconds

    tune.add_argument(
        "--judge", default="compare", choices=("compare", "capacity"),
        help="compare: the main job and `harness compare` against the baseline (default); "
        "capacity: also `harness capacity` before and after the change, kept only when "
        "acceptance passes and the capacity rose beyond the noise (the intervals)",
    )  # fmt: skip
    tune.add_argument(
        "--capacity-probes", type=positive_int, default=None, metavar="N",
        help="--judge capacity: each search's most probes (default: [capacity] max_probes)",
    )  # fmt: skip
    tune.add_argument(
        "--capacity-probe", type=seconds, default=None, metavar="DURATION",
        help="--judge capacity: arrivals per probe, e.g. 10s (default: [capacity] probe_s)",
    )  # fmt: skip
