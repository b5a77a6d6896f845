"""`reports/runs/<UTC timestamp>-<target>/`: where one run writes everything."""

from __future__ import annotations

import os
import time
from pathlib import Path

DEFAULT_REPORTS = Path("reports")


def reports_root() -> Path:
    return Path(os.environ.get("HARNESS_REPORTS_DIR", DEFAULT_REPORTS))


def new_run_dir(target: str, root: Path | None = None) -> Path:
    """A fresh run directory with `logs/` and `load/`; unique even within one second."""
    # Absolute: services and the load child may run from another folder (a copy of the stack),
    # and every path handed to them must still lead here.
    root = (root or reports_root()).resolve()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    base = root / "runs" / f"{stamp}-{target}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}.{n}")
    (path / "logs").mkdir(parents=True)
    (path / "load").mkdir()
    return path
