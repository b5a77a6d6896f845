"""The run record of `harness load PROFILE`: the same record.json, report.md and report.html
that a pytest run leaves (harness.pytest_plugin), so that a load run outside pytest is
reported, compared and trended like any other run."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config import Settings
from harness.report.environment import environment
from harness.report.finalize import finalize_run
from harness.report.record import RunRecord
from harness.report.stack_facts import preflight_section, stack_section
from harness.spec.services import secret_values
from harness.stack.base import Stack

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LoadRunRecord:
    record: RunRecord
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def start(cls, run_dir: Path, target: str, compose: Path, settings: Settings) -> LoadRunRecord:
        """Written before bring-up, so that a failed bring-up still leaves a record."""
        record = RunRecord(run_dir, target, secrets=secret_values(os.environ))
        record.put("environment", "facts", environment(ROOT))
        record.set_section("preflight", preflight_section(compose, settings, target))
        return cls(record)

    def stack_up(self, stack: Stack) -> None:
        """The stack's facts, as the plugin records them after bring-up."""
        for secret in [stack.api_key, *stack.secrets]:
            self.record.add_secret(secret)
        self.record.put("timings", "bring_up_s", round(time.monotonic() - self.started, 2))
        for key, value in stack_section(stack).items():
            self.record.put("stack", key, value)

    def finish(self, profile: str, summary: dict[str, Any] | None, passed: bool) -> list[Path]:
        """Put the profile's summary, set the status and render report.md and report.html
        (finalize_run, as the plugin does). Returns the files written."""
        if summary is not None:
            self.record.put("load", profile, summary)
        self.record.finish("passed" if summary is not None and passed else "failed")
        return finalize_run(self.record.path.parent)
