"""`harness tune` run as the owner runs it: the installed command, from the repository root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HARNESS = str(Path(sys.executable).with_name("harness"))


def tune(
    compose: Path, env: dict[str, str], *args: str, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HARNESS, "tune", *args, "--compose", str(compose)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout_s,
    )  # fmt: skip
