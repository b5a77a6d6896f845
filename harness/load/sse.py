"""Timing a streamed chat completion from the bytes as they arrive.

TTFT is the time to the first chunk that carries a token (content or reasoning); every later
token-bearing chunk adds one inter-token gap. Several events that arrive in one network read
share its timestamp, so their gaps are 0: that is what the client saw. Output tokens come from
the `usage` chunk (`stream_options.include_usage`), never from counting chunks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StreamTiming:
    first_token_at: float | None = None
    last_token_at: float | None = None
    gaps_s: list[float] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    done: bool = False
    error: str | None = None
    chunks: int = 0


def _has_token(obj: dict[str, Any]) -> bool:
    for choice in obj.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("reasoning") or delta.get("reasoning_content"):
            return True
    return False


def measure_stream(
    reads: Iterable[bytes], clock: Callable[[], float] = time.perf_counter
) -> StreamTiming:
    """Consume SSE bytes (any chunking) and time the token-bearing events."""
    t = StreamTiming()
    buffer = b""
    for raw in reads:
        now = clock()
        buffer += raw.replace(b"\r\n", b"\n")
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            for line in event.split(b"\n"):
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    t.done = True
                    continue
                try:
                    obj = json.loads(data)
                except json.JSONDecodeError:
                    t.error = "malformed SSE data"
                    continue
                t.chunks += 1
                if isinstance(obj.get("error"), dict):
                    t.error = str(obj["error"].get("message") or obj["error"])
                if obj.get("usage"):
                    t.usage = obj["usage"]
                if _has_token(obj):
                    if t.first_token_at is None:
                        t.first_token_at = now
                    elif t.last_token_at is not None:
                        t.gaps_s.append(now - t.last_token_at)
                    t.last_token_at = now
    return t
