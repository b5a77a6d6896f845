"""`make run` ends with no warning from the harness's own plugins: the owner reads its last
screen, and a warnings summary there hides what matters.

`harness run` calls pytest inside a process that has already imported the harness; that is
where pytest warns about a plugin module it can no longer rewrite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_harness_run_collects_without_a_warning(tmp_path: Path) -> None:
    harness = Path(sys.executable).with_name("harness")
    env = {**os.environ, "HARNESS_REPORTS_DIR": str(tmp_path)}
    for name in [k for k in env if k.startswith(("HARNESS_REQUIRE_", "HARNESS_PLANT_"))]:
        del env[name]
    proc = subprocess.run(
        [str(harness), "run", "--target", "twin", "--", "--collect-only", "-q"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert "collected" in out or "tests collected" in out, out[-2000:]
    assert "warnings summary" not in out and "Warning:" not in out, out[-3000:]
