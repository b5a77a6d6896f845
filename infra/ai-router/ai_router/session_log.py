"""The session log: one JSON line per request, for the harness to join with its own records.

Lines carry routing facts and token counts only. Message text and keys never enter a record:
the log is shipped with test reports, and prompts may be sensitive.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from ai_router.config import ConfigError


@dataclass
class SessionRecord:
    request_id: str
    method: str
    path: str
    started: float
    ts: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    route: str | None = None
    reason: str | None = None
    classifier_ms: int | None = None
    status: int | None = None
    stream: bool = False
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    upstream_retry: str | None = None
    error: str | None = None
    duration_ms: int | None = None

    def as_json(self) -> str:
        data: dict[str, Any] = asdict(self)
        data.pop("started")
        # ts first: the line reads as a log entry and sorts by time with plain tools.
        return json.dumps({"ts": data.pop("ts"), **data}, separators=(",", ":"))


class SessionLog:
    """Appends lines from many threads without interleaving them.

    A file is opened O_APPEND and each line goes out in a single os.write under a lock, so
    even another process appending to the same file cannot split a line.
    """

    def __init__(self, path: str | None) -> None:
        self._lock = threading.Lock()
        self._fd: int | None = None
        if path:
            try:
                self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            except OSError as exc:
                # Fail at start, like any other bad setting, rather than on the first request.
                raise ConfigError(
                    f"ROUTER_SESSION_LOG cannot be opened for appending: {exc.strerror}"
                ) from None

    def write(self, record: SessionRecord) -> None:
        line = record.as_json() + "\n"
        with self._lock:
            if self._fd is not None:
                os.write(self._fd, line.encode("utf-8"))
            else:
                # Looked up per write so a replaced sys.stderr (tests, gunicorn) is honoured.
                sys.stderr.write(line)
                sys.stderr.flush()

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
