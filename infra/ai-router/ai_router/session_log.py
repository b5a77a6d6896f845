"""The session log: one JSON line per request, for the harness to join with its own records.

Lines carry routing facts and token counts only. Message text and keys never enter a record:
the log is shipped with test reports, and prompts may be sensitive. A chat request's line carries
the conversation's shape instead (`conversation_shape`): a salted key shared by its turns, the
turn index, the message count and the history's size.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sys
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from ai_router.classify_prompt import message_text
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
    conversation: str | None = None
    turn: int | None = None
    messages: int | None = None
    history_chars: int | None = None
    history_tokens: int | None = None
    # Server-Timing's upstream figures (ai_router.timing), in ms; classify is classifier_ms.
    upstream_connect_ms: float | None = None
    upstream_ttfb_ms: float | None = None

    def as_json(self) -> str:
        data: dict[str, Any] = asdict(self)
        data.pop("started")
        # ts first: the line reads as a log entry and sorts by time with plain tools.
        return json.dumps({"ts": data.pop("ts"), **data}, separators=(",", ":"))


@dataclass(frozen=True)
class ConversationShape:
    key: str
    turn: int  # user messages so far: 1 on a conversation's first turn
    messages: int
    chars: int


def session_salt(configured: str) -> bytes:
    """The configured salt, else a random one for this process."""
    return configured.encode("utf-8") if configured else secrets.token_bytes(32)


def conversation_shape(messages: Sequence[dict[str, Any]], salt: bytes) -> ConversationShape:
    """What the log may say about a conversation. The key is an HMAC of what stays the same
    across its turns (the system messages and the first user message), so every turn of one
    conversation shares it; without the salt it cannot be matched to a guessed text."""
    texts = [(m.get("role"), message_text(m.get("content"))) for m in messages]
    first_user = next((t for role, t in texts if role == "user"), "")
    anchor = [t for role, t in texts if role == "system"] + [first_user]
    digest = hmac.new(salt, json.dumps(anchor).encode("utf-8"), hashlib.sha256).hexdigest()
    return ConversationShape(
        key=digest[:16],
        turn=sum(role == "user" for role, _ in texts),
        messages=len(messages),
        chars=sum(len(t) for _, t in texts),
    )


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
