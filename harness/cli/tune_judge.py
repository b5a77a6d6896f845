"""`harness tune --judge capacity`: `harness capacity` before the change is written and after it
was verified, on the same shape (profile, probes, objectives), in a child process each, like the
verification's own run; harness.tune_capacity decides. With `--envelope ENGINE`, `harness
envelope` runs beside each capacity search, and its difference (harness.tune_envelope) joins the
verification's record and report without deciding."""

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
    envelope: str | None = None  # primary, classifier or both: also `harness envelope`
    changes: tuple[str, ...] = ()  # the change as given on the command line, for the report
    before: Any = field(default=None, init=False)  # harness.tune_capacity.Capacity
    envelope_before: Any = field(default=None, init=False)  # (run dir, envelope.result)

    def command(self, name: str) -> list[str]:
        out = [*harness_command()]
        if self.config is not None:
            out += ["--config", str(self.config)]
        return [*out, name, "--target", self.target, "--compose", str(self.compose)]

    def argv(self) -> list[str]:
        out = self.command("capacity")
        if self.max_probes is not None:
            out += ["--max-probes", str(self.max_probes)]
        if self.probe_s is not None:
            out += ["--probe", f"{self.probe_s:g}s"]
        return out

    def envelope_argv(self) -> list[str]:
        return [*self.command("envelope"), "--engine", str(self.envelope)]

    def child_run(self, name: str, argv: list[str], what: str, ok: tuple[int, ...] = (0,)) -> Path:
        """Run `harness <name>` (`argv`), which records a run ending in -<name>; the run's
        directory. A StackError when it exits otherwise than `ok` or records no run."""
        from harness.report.run_dir import reports_root

        runs = reports_root() / "runs"
        seen = set(runs.glob("*")) if runs.is_dir() else set()
        print(f"tune: measuring {what}: harness {' '.join(argv[1:])}", flush=True)
        proc = subprocess.run(argv, env=os.environ.copy())
        made = sorted(p for p in runs.glob(f"*-{name}") if p not in seen) if runs.is_dir() else []
        if proc.returncode not in ok or not made:
            ran = f"its run: {made[-1]}" if made else "no run was recorded"
            raise StackError(f"harness {name} ({what}) failed (exit code {proc.returncode}); {ran}")
        return made[-1]

    def measure(self, when: str) -> Any:
        """One `harness capacity` run; its answer (harness.tune_capacity.Capacity)."""
        from harness.tune_capacity import Capacity

        run = self.child_run("capacity", self.argv(), f"capacity {when}")
        doc = json.loads((run / "record.json").read_text())
        return Capacity.from_section(doc["capacity"]["result"], run)

    def measure_envelope(self, when: str) -> tuple[Path, Any]:
        """One `harness envelope` run (exit 1, cells off the KV model's prediction, is still a
        measurement); its directory and `envelope.result`."""
        run = self.child_run("envelope", self.envelope_argv(), f"the envelope {when}", (0, 1))
        doc = json.loads((run / "record.json").read_text())
        return run, (doc.get("envelope") or {}).get("result")

    def measure_before(self) -> None:
        self.before = self.measure("before the change")
        if self.envelope:
            self.envelope_before = self.measure_envelope("before the change")

    def envelope_after(self) -> dict[str, Any]:
        """record.json's `tune.envelope`; a failed envelope after the change is reported, and
        leaves the verdict to the capacity."""
        from harness.tune_envelope import envelope_diff, lines

        run_b, before = self.envelope_before
        try:
            run_a, after = self.measure_envelope("after the change")
        except StackError as exc:
            doc = envelope_diff(before, None, (str(run_b), None), str(exc))
        else:
            doc = envelope_diff(before, after, (str(run_b), str(run_a)))
        for line in lines(doc):
            print(f"tune: {line}", flush=True)
        return doc

    def decide(self, code: int, run_dir: Path | None) -> Any:
        """The verdict: acceptance (the verification's exit code) and capacity after against
        before; written into the verification run's record as `tune.capacity`."""
        from harness.tune_capacity import capacity_judgement, tune_section

        after = self.measure("after the change")
        envelope = self.envelope_after() if self.envelope_before is not None else None
        passed = code == 0
        verdict = capacity_judgement(passed, self.before, after)
        if run_dir is not None and (run_dir / "record.json").is_file():
            from harness.report.finalize import finalize_run

            path = run_dir / "record.json"
            doc = json.loads(path.read_text())
            tune = doc.setdefault("tune", {})
            tune["capacity"] = tune_section(passed, self.before, after, verdict, self.changes)
            if envelope is not None:
                tune["envelope"] = envelope
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
        "--envelope", default=None, choices=("primary", "classifier", "both"),
        help="--judge capacity: also measure this engine's safe envelope (harness envelope) "
        "before and after, and report the cells that changed; the capacity still decides",
    )  # fmt: skip
    tune.add_argument(
        "--capacity-probe", type=seconds, default=None, metavar="DURATION",
        help="--judge capacity: arrivals per probe, e.g. 10s (default: [capacity] probe_s)",
    )  # fmt: skip
