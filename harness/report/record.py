"""The run record: one JSON document per run, written to `<run dir>/record.json`.

Sections are filled in as the run goes (stack, preflight, acceptance results, load, telemetry)
and the file is rewritten atomically after each change, so an interrupted run still leaves a
valid record that says so. Secret values known to the run are scrubbed before anything is
written.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import harness
from harness.report.verdict import why_failed

SCHEMA_VERSION = 1
SCRUBBED = "***"


class RunRecord:
    def __init__(self, run_dir: Path, target: str, secrets: Iterable[str] = ()) -> None:
        self.path = run_dir / "record.json"
        self._secrets = [s for s in secrets if s and len(s) >= 6]
        self._lock = threading.Lock()
        self.doc: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "harness_version": harness.__version__,
            "run_id": run_dir.name,
            "target": target,
            "started_at": _now(),
            "finished_at": None,
            "status": "running",
            # Filled by finish(): the verdict, then what failed (harness.report.verdict).
            "why_failed": None,
            "stack": {},
            "preflight": {},
            "startup": {},
            "acceptance": {},
            "load": {},
            "telemetry": {},
            "environment": {},
            "timings": {},
        }

    def add_secret(self, value: str) -> None:
        if value and len(value) >= 6:
            self._secrets.append(value)

    def put(self, section: str, key: str, value: Any) -> None:
        """Set doc[section][key] and rewrite the file."""
        with self._lock:
            self.doc.setdefault(section, {})[key] = value
            self._write()

    def set_section(self, section: str, value: dict[str, Any]) -> None:
        """Replace a whole section (e.g. the preflight's CheckResult) and rewrite the file."""
        with self._lock:
            self.doc[section] = value
            self._write()

    def finish(self, status: str, failed_tests: Iterable[Mapping[str, str]] = ()) -> None:
        """Set the final status and the `why_failed` block (`failed_tests`: each failed
        test's node id, phase and message, as harness.report.verdict.failed_test makes them)."""
        with self._lock:
            self.doc["status"] = status
            self.doc["finished_at"] = _now()
            self.doc["why_failed"] = why_failed(self.doc, self.path.parent, failed_tests)
            self._write()

    def _write(self) -> None:
        text = json.dumps(self.doc, indent=2, sort_keys=False, default=str)
        for secret in self._secrets:
            text = text.replace(secret, SCRUBBED)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(text)
        os.replace(tmp, self.path)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
