"""Server-sent events: writing OpenAI chunks, reading xAI events, watching passthrough bytes."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ai_router.reply import Usage

DONE = b"data: [DONE]\n\n"

# A passthrough line longer than this cannot be a usage chunk worth parsing; dropping it keeps
# the watcher's memory bounded however the upstream frames its output.
_MAX_WATCHED_LINE = 64 * 1024


def sse_data(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


@dataclass
class Event:
    type: str
    data: dict[str, Any]


def iter_events(lines: Iterable[str]) -> Iterator[Event]:
    """Events from SSE text lines, named by the JSON `type` field or else the `event:` line.

    Data that is not a JSON object (keep-alives, a trailing [DONE]) carries nothing to
    translate and is skipped.
    """
    name = ""
    data_lines: list[str] = []
    for line in _with_final_blank(lines):
        if line == "":
            if data_lines:
                event = _decode(name, "\n".join(data_lines))
                if event is not None:
                    yield event
            name, data_lines = "", []
        elif line.startswith(":"):
            continue
        else:
            field_name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field_name == "event":
                name = value
            elif field_name == "data":
                data_lines.append(value)


def _with_final_blank(lines: Iterable[str]) -> Iterator[str]:
    # A stream may end without the blank line that would dispatch its last event.
    yield from lines
    yield ""


def _decode(name: str, payload: str) -> Event | None:
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    kind = data.get("type")
    return Event(kind if isinstance(kind, str) and kind else name, data)


class UsageWatcher:
    """Reads usage out of OpenAI chunks as they pass through, without altering the bytes."""

    def __init__(self, usage: Usage) -> None:
        self._usage = usage
        self._pending = b""
        self._last = b""

    @property
    def mid_line(self) -> bool:
        """Whether the bytes so far stop inside a line (an interrupted event)."""
        return self._last not in (b"", b"\n")

    def feed(self, chunk: bytes) -> None:
        if chunk:
            self._last = chunk[-1:]
        lines = (self._pending + chunk).split(b"\n")
        self._pending = lines.pop()
        if len(self._pending) > _MAX_WATCHED_LINE:
            self._pending = b""
        for line in lines:
            self._line(line.rstrip(b"\r"))

    def close(self) -> None:
        self._line(self._pending.rstrip(b"\r"))
        self._pending = b""

    def _line(self, line: bytes) -> None:
        # Cheap pre-filter: only the chunk with usage counts needs a JSON parse.
        if not line.startswith(b"data:") or b'"usage"' not in line:
            return
        try:
            data = json.loads(line[5:])
        except ValueError:
            return
        if isinstance(data, dict):
            self._usage.update_from(data.get("usage"))
