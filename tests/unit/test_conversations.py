"""The conversation profile's builder and report (harness.load.conversations): plans, the band,
fitting a padded turn to a token target, the reply text, and the figures of a run."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from harness.load import conversations as c
from harness.load.records import RequestRecord
from harness.telemetry.prom import parse

PROMPTS = {"local": ["What is 2 + 2?", "Explain recursion."], "search": ["Weather in Oslo today?"]}


def words(messages: list[dict[str, str]]) -> int:
    """A fake tokenizer: a word is a token, each message adds 4 for its template."""
    return sum(len(m["content"].split()) + 4 for m in messages)


def test_the_first_conversation_grows_into_the_band_and_others_are_short() -> None:
    rng = random.Random(1)
    long = c.plan(rng, 0, PROMPTS, 32768, band_target=32680)
    assert [t.route for t in long] == ["search", "local", "local"]
    assert [t.target_tokens for t in long] == [None, int(32768 * c.LONG_FRACTION), 32680]
    assert [t.band for t in long] == [False, False, True]
    assert long[1].target_tokens is not None and long[1].target_tokens >= 0.9 * 32768
    for number in range(1, c.LONG_EVERY):
        short = c.plan(rng, number, PROMPTS, 32768, band_target=32680)
        assert c.SHORT_TURNS[0] <= len(short) <= c.SHORT_TURNS[1]
        assert all(t.target_tokens is None and not t.band for t in short)
        assert all(t.question in PROMPTS[t.route] for t in short)
    assert c.plan(rng, c.LONG_EVERY, PROMPTS, 32768, None)[-1].target_tokens == int(
        32768 * c.NO_BAND_FRACTION
    )


def test_without_search_every_turn_is_local() -> None:
    rng = random.Random(2)
    for number in range(12):
        turns = c.plan(rng, number, {"local": PROMPTS["local"]}, 8192, None)
        assert {t.route for t in turns} == {"local"}


def test_both_routes_are_drawn_over_the_short_conversations() -> None:
    rng = random.Random(3)
    routes = {t.route for n in range(1, 40) for t in c.plan(rng, n, PROMPTS, 8192, None)}
    assert routes == {"local", "search"}


def test_the_band_of_the_twin() -> None:
    """`harness check`'s figures for the twin: overhead 175 (170 prompt + 5 label)."""
    band = c.Band(32768, 5, 170, 32768)
    assert (band.low, band.high) == (32594, 32767)
    target = band.target()
    assert target is not None and band.low < target < band.high
    assert c.Band(65536, 5, 170, 32768).target() is None


def test_the_band_is_measured_with_the_classifiers_tokenize() -> None:
    from ai_router.classify_prompt import classification_messages

    def post(body: dict[str, Any]) -> dict[str, Any]:
        if "prompt" in body:
            return {"count": 1 if body["prompt"] == "local" else 2, "max_model_len": 1000}
        return {"count": words(body["messages"]), "max_model_len": 1000}

    band = c.measure_band(post, "clf", 1000)
    sample = [{"role": "user", "content": "x"}]
    overhead = words(classification_messages(sample)) - words(sample)
    assert band == c.Band(1000, 3, overhead, 1000)


@pytest.mark.parametrize("target", [300, 1000, 5000])
def test_a_padded_turn_lands_just_below_its_target(target: int) -> None:
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    pad = c.notes(random.Random(4), ["one two three.", "four five six seven."], target * 8)
    calls: list[int] = []

    def count(msgs: list[dict[str, str]]) -> int:
        calls.append(1)
        return words(msgs)

    content, tokens = c.fit_padding(count, history, "What now?", pad, target, tolerance=8)
    assert content.startswith(c.NOTES) and content.endswith("\n\nWhat now?")
    assert tokens == words([*history, {"role": "user", "content": content}])
    assert target - 8 <= tokens <= target
    assert len(calls) <= 20


def test_padding_that_cannot_reach_the_target_is_an_error() -> None:
    with pytest.raises(ValueError, match="characters of notes"):
        c.fit_padding(words, [], "q", "a b c", 500)


def test_a_target_already_reached_adds_no_notes() -> None:
    assert c.fit_padding(words, [], "one two", "pad " * 100, 3) == ("one two", 6)


def test_the_reply_text_from_the_stream() -> None:
    body = (
        b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n'
        b'data: {"choices":[{"delta":{"content":"Hel"}}]}\r\n\r\n'
        b": ping\n\n"
        b'data: {"choices":[{"delta":{"content":"lo."}}]}\n\n'
        b'data: {"choices":[],"usage":{"completion_tokens":2}}\n\n'
        b"data: [DONE]\n\n"
    )
    assert c.reply_text(body) == "Hello."
    assert c.reply_text(b'data: {"error": {"message": "x"}}\n\n') == ""


def test_history_buckets() -> None:
    assert c.history_bucket(100, 32768) == "0%-10%"
    assert c.history_bucket(20000, 32768) == "50%-90%"
    assert c.history_bucket(30000, 32768) == "90%-100%"
    assert c.history_bucket(40000, 32768) == ">100%"


def turn(rid: str, conv: str, n: int, expected: str, tokens: int, **kw: Any) -> c.TurnLine:
    base: dict[str, Any] = {
        "request_id": rid,
        "conversation": conv,
        "turn": n,
        "turns_planned": 3,
        "messages": 2 * n - 1,
        "history_tokens": tokens,
        "history_chars": 3 * tokens,
        "padded": False,
        "band": False,
        "expected_route": expected,
    }
    return c.TurnLine(**(base | kw))


def record(rid: str, route: str, ttft: float, ms: float, reason: str = "classified") -> Any:
    r = RequestRecord("ConversationUser", "router", 0.0, 0.0, 200, True, route=route,
                      reason=reason, classifier_ms=ms, ttft_s=ttft, e2e_s=ttft + 1)  # fmt: skip
    r.request_id = rid
    return r


def metrics(hits: float, queries: float) -> Any:
    return parse(
        f'vllm:prefix_cache_hits_total{{engine="0",model_name="m"}} {hits}\n'
        f'vllm:prefix_cache_queries_total{{engine="0",model_name="m"}} {queries}\n'
    )


def test_the_report_of_a_run(tmp_path: Path) -> None:
    turns = [
        turn("a1", "A", 1, "search", 30),
        turn("a2", "A", 2, "local", 30000, padded=True),
        turn("a3", "A", 3, "local", 32680, padded=True, band=True),
        turn("b1", "B", 1, "local", 20),
        turn("b2", "B", 2, "local", 90),
    ]
    log = tmp_path / c.TURN_LOG
    log.write_text("".join(t.line() + "\n" for t in turns))
    read = c.read_turns(log)
    assert read["a3"] == turns[2]
    assert not {"content", "question", "messages_text"} & set(json.loads(turns[0].line()))
    records = [
        record("a1", "search", 1.0, 20),
        record("a2", "local", 9.0, 4000),
        record("a3", "local", 2.0, 900, reason=c.TRIMMED),
        record("b1", "local", 1.5, 30),
        record("b2", "search", 1.1, 35),  # a flip the labels did not ask for
        record("zz", "local", 1.0, 10),  # not a conversation turn
    ]
    first = {"vllm-primary": metrics(0, 0), "vllm-router": parse("")}
    last = {"vllm-primary": metrics(30000, 64000), "vllm-router": parse("")}
    rep = c.conversation_report(records, read, first, last, 32768)
    assert (rep["requests"], rep["unjoined_records"], rep["conversations"]) == (5, 1, 2)
    assert rep["turns_per_conversation"] == {"2": 1, "3": 1}
    assert (rep["trimmed"], rep["band_turns"], rep["band_turns_trimmed"]) == (1, 1, 1)
    assert (rep["turns_in_last_10pct"], rep["history_tokens_max"]) == (2, 32680)
    assert rep["ttft_by_turn_s"]["1"]["n"] == 2 and rep["ttft_by_turn_s"]["3"]["p50"] == 2.0
    by_history = rep["classifier_ms_by_history"]
    assert list(by_history) == ["0%-10%", "90%-100%"]
    assert by_history["90%-100%"]["trimmed"] == 1 and by_history["90%-100%"]["n"] == 2
    assert rep["route_flips"] == {
        "turn_pairs": 3,
        "flips": 2,
        "conversations_with_flip": 2,
        "expected_flips": 1,
        "unexpected_flips": 1,
        "missed_flips": 0,
    }
    assert rep["prefix_cache"]["vllm-primary"] == {
        "hits": 30000.0,
        "queries": 64000.0,
        "hit_rate": 0.4688,
    }
    # An engine that exposes no prefix-cache counters: unknown, never 0.
    assert rep["prefix_cache"]["vllm-router"]["hit_rate"] is None


def test_the_pinned_vllm_names_the_prefix_cache_counters_so() -> None:
    """vllm/v1/metrics/loggers.py registers the counters without _total; prometheus_client
    exposes them with it."""
    import importlib.util

    spec = importlib.util.find_spec("vllm")
    if spec is None or spec.origin is None:
        pytest.skip("vllm is not installed here (a core-only install)")
    source = (Path(spec.origin).parent / "v1" / "metrics" / "loggers.py").read_text()
    for name in (c.PREFIX_HITS[1], c.PREFIX_QUERIES[1]):
        assert f'name="{name}"' in source
    assert c.PREFIX_HITS[0] == c.PREFIX_HITS[1] + "_total"
