"""`harness tune` run as the owner runs it: the installed command, from the repository root.

Its output reaches the terminal as it comes, each line marked `tune|`, through the session's
progress reporter (past pytest's output capture): a live tune takes minutes. The nested run's
own test results appear there too, under that mark; only the outer test's verdict counts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from harness.progress import current

ROOT = Path(__file__).resolve().parents[2]
HARNESS = str(Path(sys.executable).with_name("harness"))


def tune(
    compose: Path, env: dict[str, str], *args: str, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    argv = [HARNESS, "tune", *args, "--compose", str(compose)]
    say = current()
    lines: list[str] = []
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
        start_new_session=True,
    )  # fmt: skip

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            say(f"tune| {line.rstrip()}")

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    finally:
        reader.join(timeout=10)
    return subprocess.CompletedProcess(argv, code, "".join(lines), "")
