"""What a route handler hands back to the app: a finished body or a live SSE stream.

The app, not the route modules, owns Flask responses and the session log; this small type is
the contract between them. Usage is mutable because for streams it is only known at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
JSON_CONTENT_TYPE = "application/json"


@dataclass
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    def update_from(self, usage: object) -> None:
        """Take token counts from an OpenAI `usage` object, ignoring anything malformed."""
        if not isinstance(usage, dict):
            return
        for name in ("prompt_tokens", "completion_tokens"):
            value = usage.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                setattr(self, name, value)


@dataclass
class Reply:
    status: int = 200
    body: bytes | None = None
    stream: Iterator[bytes] | None = None
    content_type: str = JSON_CONTENT_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    # Set by a stream that failed after its first byte, where the status can no longer change.
    stream_error: str | None = None
