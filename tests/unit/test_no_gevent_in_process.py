"""gevent's monkey-patching must never reach the harness or pytest process: locust runs in a
subprocess, and nothing the harness imports in-process may import it."""

from __future__ import annotations

import subprocess
import sys


def test_harness_modules_do_not_import_locust_or_gevent() -> None:
    code = (
        "import sys, harness.cli, harness.cli.run, harness.cli.stack, harness.load.runner, "
        "harness.load.stats, harness.load.slo, harness.pytest_plugin\n"
        "bad = [m for m in ('locust', 'gevent') if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported in-process: {out.stdout.strip()}"
