"""Memory and open files of the processes a soak run watches, read from /proc (Linux).

A leak shows as growth between the first sample after warm-up and the last one: resident memory
in MiB and file descriptors, summed over each watched group of processes.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROC = Path("/proc")


@dataclass(frozen=True)
class Usage:
    rss_bytes: int
    fds: int
    processes: int


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
    return text.rsplit(")", 1)[1].split()


def _all_pids() -> list[int]:
    return [int(p.name) for p in PROC.iterdir() if p.name.isdigit()]


def group_pids(pgid: int) -> list[int]:
    """Every live process of a process group (a service the harness started)."""
    out = []
    for pid in _all_pids():
        fields = _stat_fields(pid)
        if fields and int(fields[2]) == pgid:
            out.append(pid)
    return out


def descendants(root: int) -> list[int]:
    """`root` and every live process below it."""
    children: dict[int, list[int]] = {}
    for pid in _all_pids():
        fields = _stat_fields(pid)
        if fields:
            children.setdefault(int(fields[1]), []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def usage(pids: Iterable[int]) -> Usage:
    rss = fds = n = 0
    for pid in pids:
        try:
            status = (PROC / str(pid) / "status").read_text()
            count = len(os.listdir(PROC / str(pid) / "fd"))
        except OSError:  # it exited between the listing and the read
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1]) * 1024
        fds += count
        n += 1
    return Usage(rss, fds, n)


class ResourceWatch:
    """Samples each named group of processes every `interval_s` on a background thread."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]], interval_s: float = 5.0) -> None:
        self.groups = groups
        self.interval_s = interval_s
        self.samples: list[tuple[float, dict[str, Usage]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="resource-watch", daemon=True)
        self._t0 = 0.0

    def __enter__(self) -> ResourceWatch:
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def sample(self) -> None:
        now = time.monotonic() - self._t0
        self.samples.append((now, {name: usage(pids()) for name, pids in self.groups.items()}))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    def summary(self, warmup_s: float) -> dict[str, dict[str, Any]]:
        """Per group: MiB and descriptors at the first sample after warm-up, at the last one
        with the same number of processes (a load generator that has already exited is not a
        shrink), the growth between them and the peak."""
        out: dict[str, dict[str, Any]] = {}
        after = [s for s in self.samples if s[0] >= warmup_s] or self.samples[-1:]
        if not after:
            return out
        for name in self.groups:
            first = after[0][1][name]
            same = [s for s in after if s[1][name].processes == first.processes]
            last_t, last = same[-1][0], same[-1][1][name]
            peak = max(s[1][name].rss_bytes for s in self.samples)
            out[name] = {
                "rss_start_mib": round(first.rss_bytes / 2**20, 1),
                "rss_end_mib": round(last.rss_bytes / 2**20, 1),
                "rss_growth_mib": round((last.rss_bytes - first.rss_bytes) / 2**20, 1),
                "rss_peak_mib": round(peak / 2**20, 1),
                "fds_start": first.fds,
                "fds_end": last.fds,
                "fd_growth": last.fds - first.fds,
                "processes_end": last.processes,
                "from_s": round(after[0][0], 1),
                "to_s": round(last_t, 1),
            }
        return out
