"""Service logs: where they go and how their last lines are read back."""

from __future__ import annotations

import re
from collections import deque
from pathlib import Path

# Values of these are replaced before a log tail is shown anywhere.
_SECRET_ASSIGN = re.compile(
    r"(?i)((?:api[_-]?keys?|token|secret|password|authorization)\W{0,3})(\S+)"
)


def tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a log file, secrets masked; '' when it does not exist."""
    try:
        with path.open("r", errors="replace") as fh:
            last = deque(fh, maxlen=lines)
    except OSError:
        return ""
    return "".join(_SECRET_ASSIGN.sub(r"\1***", ln) for ln in last).rstrip()


_EXCEPTION = re.compile(r"\b([A-Z]\w*(?:Error|Exception): .+)$")
# vLLM's advisory lines quote error texts ("can cause `OSError: ...`") without anything failing.
_ADVISORY = re.compile(r"\b(?:DEBUG|INFO|WARNING)\s+\d\d-\d\d ")


def root_cause(path: Path) -> str | None:
    """The first exception line in a log ('ValueError: ...'), secrets masked.

    A failed engine prints its root cause long before the wrapper tracebacks that end its log,
    so the tail alone often hides it.
    """
    try:
        with path.open("r", errors="replace") as fh:
            for line in fh:
                if _ADVISORY.search(line):
                    continue
                m = _EXCEPTION.search(line.rstrip())
                if m:
                    return _SECRET_ASSIGN.sub(r"\1***", m.group(1))[:500]
    except OSError:
        return None
    return None
