"""Process facts from /proc that the GPU readings need: a PID's parent."""

from __future__ import annotations

from pathlib import Path


def parent_of(pid: int, proc: Path = Path("/proc")) -> int | None:
    """The parent PID from /proc/<pid>/stat (after the command name, which may hold spaces)."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None
