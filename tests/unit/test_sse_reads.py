"""SSE timing over awkward reads: CRLF and multibyte characters split across reads, and a last
event that the stream ends without a blank line."""

from __future__ import annotations

import itertools
import json

from harness.load.sse import measure_stream


def sse(obj: object) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def chunk(text: str) -> dict:
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": text}}],
    }


def test_crlf_and_multibyte_characters_split_across_reads() -> None:
    payload = (
        b": keep-alive\r\n\r\n"
        + (
            "data: " + json.dumps(chunk("caf\u00e9 \u2713"), ensure_ascii=False) + "\r\n\r\n"
        ).encode()
        + b"data: [DONE]\r\n\r\n"
    )
    # Split inside every CRLF and inside every multibyte character: one byte per read.
    reads = [payload[i : i + 1] for i in range(len(payload))]
    counter = itertools.count()
    t = measure_stream(reads, clock=lambda: float(next(counter)))
    assert t.error is None and t.done and t.chunks == 1
    assert len(payload) > len(payload.decode())  # the characters really are multibyte
    assert t.first_token_at is not None


def test_last_event_without_a_blank_line_is_still_read() -> None:
    t = measure_stream(
        [sse(chunk("a")), b'data: {"choices": [], "usage": {"completion_tokens": 1}}']
    )
    assert t.usage == {"completion_tokens": 1}


def test_an_answer_in_one_read_has_no_inter_token_latency() -> None:
    one_read = sse(chunk("a")) + sse(chunk("b")) + sse(chunk("c")) + b"data: [DONE]\n\n"
    t = measure_stream([one_read])
    assert t.first_token_at is not None and t.gaps_s == []
    # Over two reads the zeros are what the client saw, and they stay.
    t = measure_stream(
        [sse(chunk("a")), sse(chunk("b")) + sse(chunk("c"))], clock=iter([1.0, 2.0]).__next__
    )
    assert t.gaps_s == [1.0, 0.0]
