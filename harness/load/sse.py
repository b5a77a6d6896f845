"""Timing a streamed chat completion from the bytes as they arrive.

TTFT is the time to the first chunk with a choice in it, and every later one adds one
inter-token gap: what vLLM's serving benchmark measures, and what the engine's own TTFT
histogram times. vLLM sends that first chunk (role, empty content) with the response's first
token even when nothing of it is shown: a reasoning parser holds back Qwen3's `<think>`, and the
first visible token then comes one decode step later. Timing the first visible token instead
made TTFT one inter-token gap longer than both. Several events that arrive in one network read
share its timestamp, so their gaps are 0: that is what the client saw. An answer whose tokens
all arrived in one read has no inter-token latency at all (no gaps, shown as n/a), not a run
of zeros. Output tokens come from
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


def _has_choice(obj: dict[str, Any]) -> bool:
    """A chunk of the answer: vLLM's chunks carry one per decode step (the usage chunk and
    error events carry none)."""
    return any(isinstance(c, dict) for c in obj.get("choices") or ())


_decode = json.JSONDecoder().decode


def _dispatch(t: StreamTiming, event: bytes, now: float) -> None:
    """One complete event, stamped with the read that completed it."""
    for line in event.split(b"\n") if b"\n" in event else (event,):
        if not line.startswith(b"data:"):
            continue  # comments (keep-alive pings), event:, id:, retry:
        data = line[5:].strip()
        if data == b"[DONE]":
            t.done = True
            continue
        try:
            obj = _decode(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            t.error = "malformed SSE data"
            continue
        if not isinstance(obj, dict):
            t.error = "malformed SSE data"
            continue
        t.chunks += 1
        if isinstance(obj.get("error"), dict):
            t.error = str(obj["error"].get("message") or obj["error"])
        if obj.get("usage"):
            t.usage = obj["usage"]
        if _has_choice(obj):
            if t.first_token_at is None:
                t.first_token_at = now
            elif t.last_token_at is not None:
                t.gaps_s.append(now - t.last_token_at)
            t.last_token_at = now


def measure_stream(
    reads: Iterable[bytes], clock: Callable[[], float] = time.perf_counter
) -> StreamTiming:
    """Consume SSE bytes (any chunking, any event size) and time the answer's chunks.

    The clock is read once per read, as the read is handed over; events are decoded only once
    their blank line has arrived, so an event or a multibyte character split across reads is
    whole when parsed. A last event that the stream ends without a blank line is still read.
    """
    t = StreamTiming()
    buffer = b""
    now = 0.0
    for raw in reads:
        now = clock()
        buffer += raw
        if b"\r" in buffer:
            # On the whole pending tail, so that a CRLF split across two reads is seen whole.
            buffer = buffer.replace(b"\r\n", b"\n")
        if b"\n\n" in buffer:
            *events, buffer = buffer.split(b"\n\n")
            for event in events:
                _dispatch(t, event, now)
    if buffer.strip():
        _dispatch(t, buffer.strip(), now)
    if t.first_token_at is not None and t.last_token_at == t.first_token_at:
        t.gaps_s.clear()
    return t
