"""Child processes in their own process groups, so teardown reaches every descendant."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_PROC = Path("/proc")


def spawn(
    argv: Sequence[str], *, log_path: Path, env: Mapping[str, str], cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start `argv` in a new session (its own process group), stdout+stderr to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )


def group_alive(pgid: int, proc: Path = _PROC) -> bool:
    """True while a member of the process group still runs.

    A member that exited but that its parent has not reaped yet (a zombie) does not count: the
    group is done. Without that, a `harness down` in one process would wait out its grace period
    and report "still running" for engines that another process started and has not reaped.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _has_live_member(pgid, proc)


def _has_live_member(pgid: int, proc: Path) -> bool:
    try:
        entries = list(proc.iterdir())
    except OSError:
        return True  # no /proc to look in: the signal check is all there is
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat_fields((entry / "stat").read_text())
        except OSError:
            continue  # gone meanwhile
        if int(fields[2]) == pgid and fields[0] != "Z":  # pgrp, state
            return True
    return False


def stop_group(pgid: int, *, grace_s: float = 15.0) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after `grace_s`."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        _reap(pgid)
        if not group_alive(pgid):
            return
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return
    for _ in range(50):
        _reap(pgid)
        if not group_alive(pgid):
            return
        time.sleep(0.1)


def _reap(pgid: int) -> None:
    """Collect our exited child so a zombie does not keep the group 'alive'."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pgid, os.WNOHANG)


@dataclass(frozen=True)
class ProcessIdentity:
    """What tells a process apart from a later one that got the same PID: the kernel's boot and
    the process's start time in clock ticks since that boot. The command line is kept for the
    reader only: it is read right after the fork, before the exec, and servers such as gunicorn
    rewrite their own later."""

    pid: int
    boot_id: str
    start_ticks: int
    cmdline: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "boot_id": self.boot_id,
            "start_ticks": self.start_ticks,
            "cmdline": list(self.cmdline),
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> ProcessIdentity:
        return cls(
            pid=int(doc["pid"]),
            boot_id=str(doc["boot_id"]),
            start_ticks=int(doc["start_ticks"]),
            cmdline=tuple(str(a) for a in doc["cmdline"]),
        )


def _stat_fields(stat: str) -> list[str]:
    """proc_pid_stat(5) after "pid (comm) ": state, ppid, pgrp, ... (field 3 onwards). The
    command name may itself hold spaces and ")": split after the last one."""
    return stat[stat.rindex(")") + 2 :].split()


def process_identity(pid: int, proc: Path = _PROC) -> ProcessIdentity | None:
    """The running process `pid` as /proc shows it, or None when there is none (or no /proc)."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
        raw = (proc / str(pid) / "cmdline").read_bytes()
        boot_id = (proc / "sys" / "kernel" / "random" / "boot_id").read_text().strip()
    except OSError:
        return None
    start_ticks = int(_stat_fields(stat)[19])  # field 22 of proc_pid_stat(5)
    cmdline = tuple(a.decode(errors="replace") for a in raw.split(b"\0") if a)
    return ProcessIdentity(pid, boot_id, start_ticks, cmdline)


def still_ours(recorded: ProcessIdentity, proc: Path = _PROC) -> bool:
    """True while the group `recorded` leads is the one that was started, never a stranger that
    reuses the number.

    A live leader must have the recorded boot and start time. A dead leader whose group is
    still alive leaves members of that very group: Linux hands out no PID while it is still
    some group's ID, so the number cannot have been reused."""
    now = process_identity(recorded.pid, proc)
    if now is None:
        return group_alive(recorded.pid)
    return (now.boot_id, now.start_ticks) == (recorded.boot_id, recorded.start_ticks)


@dataclass(frozen=True)
class RecordedGroup:
    """One entry of a run's pids.json."""

    pids_file: Path
    name: str
    pid: int
    identity: ProcessIdentity | None  # None where an older harness recorded the PID alone


def recorded_groups(pids_file: Path) -> list[RecordedGroup]:
    """The process groups a run's pids.json names; none when the file is missing or unreadable."""
    try:
        doc = json.loads(pids_file.read_text())
    except (OSError, ValueError):
        return []
    out = []
    for name, entry in doc.items() if isinstance(doc, dict) else ():
        try:
            if isinstance(entry, dict):
                ident = ProcessIdentity.from_dict(entry) if "start_ticks" in entry else None
                out.append(RecordedGroup(pids_file, name, int(entry["pid"]), ident))
            else:
                out.append(RecordedGroup(pids_file, name, int(entry), None))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def sweep_recorded(pids_files: Iterable[Path]) -> list[tuple[RecordedGroup, str]]:
    """End every still-running process group these pids.json files name, after checking it is
    the one that was started. Returns (group, outcome) for each group found alive: "stopped",
    "still running" (after SIGKILL), "pid reused" or "no identity recorded" (left alone)."""
    seen: set[int] = set()
    out = []
    for path in pids_files:
        for group in recorded_groups(path):
            if group.pid in seen or not group_alive(group.pid):
                continue
            seen.add(group.pid)
            if group.identity is None:
                out.append((group, "no identity recorded"))
            elif not still_ours(group.identity):
                out.append((group, "pid reused"))
            else:
                stop_group(group.pid)
                out.append((group, "still running" if group_alive(group.pid) else "stopped"))
    return out
