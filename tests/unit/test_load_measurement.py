"""Client-side timing of streams, exact percentiles, and the load stats built on them."""

from __future__ import annotations

import itertools
import json

import pytest

from harness.load.records import RequestRecord
from harness.load.sse import measure_stream
from harness.load.stats import latency_stats, percentile, throughput


def sse(obj: object) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def chunk(text: str = "", reasoning: str = "") -> dict:
    delta = {"content": text} if text else {"reasoning": reasoning}
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}


def test_ttft_and_gaps_from_every_chunk_with_a_choice() -> None:
    """As vLLM's serving benchmark and the engine's TTFT histogram count: the role chunk comes
    with the first token (one a reasoning parser may hold back), the usage chunk is no token."""
    clock = iter([1.0, 1.5, 1.7, 2.0, 2.1])
    reads = [
        sse({"object": "chat.completion.chunk", "choices": [{"delta": {"role": "assistant"}}]}),
        sse(chunk(reasoning="think")),
        sse(chunk("a")) + sse(chunk("b")),  # two events in one read: a gap of 0
        sse(chunk("c")),
        sse({"choices": [], "usage": {"completion_tokens": 7, "prompt_tokens": 3}})
        + b"data: [DONE]\n\n",
    ]
    t = measure_stream(reads, clock=lambda: next(clock))
    assert t.first_token_at == 1.0
    assert t.gaps_s == pytest.approx([0.5, 0.2, 0.0, 0.3])
    assert t.usage == {"completion_tokens": 7, "prompt_tokens": 3}
    assert t.done and t.error is None


def test_events_split_across_reads_and_crlf() -> None:
    payload = sse(chunk("hello")).replace(b"\n", b"\r\n") + b"data: [DONE]\r\n\r\n"
    reads = [payload[i : i + 7] for i in range(0, len(payload), 7)]
    counter = itertools.count()
    t = measure_stream(reads, clock=lambda: float(next(counter)))
    assert t.first_token_at is not None and t.done


def test_error_event_in_stream_is_reported() -> None:
    t = measure_stream([sse({"error": {"message": "upstream died"}}) + b"data: [DONE]\n\n"])
    assert t.error == "upstream died" and t.first_token_at is None


def test_percentile_is_exact_with_linear_interpolation() -> None:
    xs = [float(x) for x in range(1, 101)]
    assert percentile(xs, 50) == pytest.approx(50.5)
    assert percentile(xs, 99) == pytest.approx(99.01)
    assert percentile([3.0], 95) == 3.0
    assert percentile([], 50) is None


def rec(route: str, ok: bool, ttft: float, start: float = 0.0) -> RequestRecord:
    return RequestRecord(
        "ChatUser",
        "router",
        start,
        start,
        200 if ok else 502,
        ok,
        route=route,
        ttft_s=ttft,
        itl_s=[0.01, 0.02],
        e2e_s=ttft + 1.0,
        output_tokens=10,
    )


def test_failures_are_counted_but_kept_out_of_percentiles() -> None:
    records = [
        rec("local", True, 0.1),
        rec("local", True, 0.3),
        rec("local", False, 99.0),
        rec("search", True, 0.5, start=1.0),
    ]
    stats = latency_stats(records)
    assert stats["local"]["failed"] == 1 and stats["local"]["ok"] == 2
    assert stats["local"]["ttft_s"]["p50"] == pytest.approx(0.2)
    assert stats["all"]["ttft_s"]["p95"] < 1.0
    assert stats["search"]["output_tokens_per_s"]["p50"] == pytest.approx(10 / 1.0)
    assert throughput(records)["requests_per_s"] == pytest.approx(3 / 2.5)
