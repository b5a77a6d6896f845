"""The run record of `harness load PROFILE`: the same record.json, report.md and report.html
that a pytest run leaves (harness.pytest_plugin), so that a load run outside pytest is
reported, compared and trended like any other run."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.compose.services import secret_values
from harness.config import Settings
from harness.report.environment import environment
from harness.report.finalize import finalize_run
from harness.report.record import RunRecord
from harness.report.stack_facts import preflight_section, stack_section
from harness.report.verdict import attach_slo_checks
from harness.stack.base import Stack

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LoadRunRecord:
    record: RunRecord
    started: float = field(default_factory=time.monotonic)
    settings: Settings | None = None
    primary: str | None = None

    @classmethod
    def start(cls, run_dir: Path, target: str, compose: Path, settings: Settings) -> LoadRunRecord:
        """Written before bring-up, so that a failed bring-up still leaves a record."""
        record = RunRecord(run_dir, target, secrets=secret_values(os.environ))
        record.put("environment", "facts", environment(ROOT))
        record.set_section("preflight", preflight_section(compose, settings, target))
        return cls(record, settings=settings)

    def stack_up(self, stack: Stack) -> None:
        """The stack's facts, as the plugin records them after bring-up."""
        for secret in [stack.api_key, *stack.secrets]:
            self.record.add_secret(secret)
        self.primary = stack.primary.name
        self.record.put("timings", "bring_up_s", round(time.monotonic() - self.started, 2))
        for key, value in stack_section(stack).items():
            self.record.put("stack", key, value)

    def finish(self, profile: str, summary: dict[str, Any] | None, passed: bool) -> list[Path]:
        """Put the profile's summary with its SLO rows, set the status and the why-failed block,
        and render report.md and report.html (finalize_run, as the plugin does). Called from a
        `finally`: an exception on its way out before stack_up is the run's bring-up error.
        Returns the files written."""
        if summary is not None:
            self.record.put("load", profile, summary)
            if self.settings is not None:
                attach_slo_checks(self.record.doc, self.settings, self.primary)
        error = sys.exc_info()[1]
        if self.primary is None and error is not None and "error" not in self.record.doc["startup"]:
            self.record.put("startup", "error", str(error) or type(error).__name__)
        self.record.finish("passed" if summary is not None and passed else "failed")
        return finalize_run(self.record.path.parent)
