"""`harness sessions` on conversation shapes: turns per conversation and conversation lengths
from the session log's salted keys, in tokens where counted, in characters otherwise."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.report.sessions import (
    conversation_shapes,
    parse_lines,
    read_log,
    render_text,
    summarize,
)

LOG = Path(__file__).parent / "data" / "ai-router-session.jsonl"


def chat(conv: str, turn: int, **kw: Any) -> dict[str, Any]:
    return {
        "ts": f"2026-12-01T10:00:{turn:02d}+00:00",
        "method": "POST",
        "path": "/v1/chat/completions",
        "route": "local",
        "reason": "classified",
        "conversation": conv,
        "turn": turn,
        "messages": 2 * turn - 1,
        **kw,
    }


RECORDS = [
    chat("a", 1, history_chars=40, prompt_tokens=15),
    chat("a", 2, history_chars=400, prompt_tokens=120),
    chat("a", 3, history_chars=90000, history_tokens=30000, prompt_tokens=30000),
    chat("b", 1, history_chars=30, route="search", prompt_tokens=21),
    chat("c", 1, history_chars=50),
    chat("c", 2, history_chars=700, route="search", prompt_tokens=9),
    {"ts": "2026-12-01T10:01:00+00:00", "method": "GET", "path": "/health"},
    {"ts": "2026-12-01T10:01:01+00:00", "method": "POST", "path": "/v1/route"},
]


def test_turns_and_lengths_per_conversation() -> None:
    shape = conversation_shapes(RECORDS)
    assert (shape["requests"], shape["conversations"], shape["multi_turn_conversations"]) == (
        6,
        3,
        2,
    )
    assert shape["turns_per_conversation_counts"] == {"1": 1, "2": 1, "3": 1}
    assert shape["turns_per_conversation"] == {"n": 3, "p50": 2.0, "p95": 2.9, "max": 3}
    assert shape["request_turn_index"]["max"] == 3 and shape["request_turn_index"]["n"] == 6
    # a: the router's count at its last turn; b and c ended on search: the primary never
    # counted them, and a search answer's prompt tokens are xAI's, so characters.
    assert shape["length_tokens"] == {"n": 1, "p50": 30000.0, "p95": 30000.0, "max": 30000}
    assert shape["length_chars"]["n"] == 2 and shape["length_chars"]["max"] == 700


def test_the_summary_and_its_text_show_the_shapes() -> None:
    s = summarize(parse_lines([json.dumps(r) for r in RECORDS], "mem"))
    assert s.shape["conversations"] == 3
    assert s.to_dict()["shape"] == s.shape
    text = render_text(s)
    assert "conversations: 3 over 6 requests, 2 multi-turn" in text
    assert "1 turn: 1, 2 turns: 1, 3 turns: 1" in text
    assert "conversation length at its last turn: tokens p50 30,000" in text


def test_a_log_without_conversation_keys_says_so() -> None:
    s = summarize(read_log(LOG))
    assert s.shape["conversations"] == 0
    assert "conversations: none keyed" in render_text(s)


@pytest.mark.parametrize("turns", [[1, 2, 3], [3, 1, 2]])
def test_a_conversation_counts_its_highest_turn_whatever_the_log_order(turns: list[int]) -> None:
    records = [chat("a", t, history_chars=10 * t) for t in turns]
    shape = conversation_shapes(records)
    assert shape["turns_per_conversation"]["max"] == 3
    assert shape["length_chars"]["max"] == 30
