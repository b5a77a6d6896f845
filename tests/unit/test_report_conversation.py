"""The conversation profile's figures reach report.md and report.html: TTFT by turn, the
classifier's time by history length, route flips and the prefix-cache hit rate."""

from __future__ import annotations

from typing import Any

import report_fixtures as fixtures

from harness.report.render_html import render_html
from harness.report.render_md import render_markdown

CONVERSATION: dict[str, Any] = {
    "requests": 18, "conversations": 6, "max_model_len": 32768, "history_tokens_max": 32662,
    "turns_in_last_10pct": 3, "trimmed": 1,
    "ttft_by_turn_s": {
        "2": {"n": 6.0, "p50": 11.5075, "p95": 26.7843, "mean": 13.6271},
        "1": {"n": 6.0, "p50": 0.3982, "p95": 10.084, "mean": 2.6601},
    },
    "classifier_ms_by_history": {
        "90%-100%": {"n": 3.0, "p50": 12088.0, "p95": 13445.2, "history_tokens_min": 30138,
                     "history_tokens_max": 32662, "trimmed": 1},
    },
    "route_flips": {"turn_pairs": 12, "flips": 7, "conversations_with_flip": 5,
                    "unexpected_flips": 1, "missed_flips": 0},
    "prefix_cache": {"vllm-primary": {"hits": 30080.0, "queries": 93368.0, "hit_rate": 0.3222}},
}  # fmt: skip


def record() -> dict[str, Any]:
    doc = fixtures.record()
    doc["load"]["conversation"] = {**fixtures.load_summary("steady"), "conversation": CONVERSATION}
    return doc


def test_report_md_has_the_conversation_figures() -> None:
    md = render_markdown(record())
    assert "## Conversations" in md
    assert "18 turns in 6 conversations; longest history 32,662 of 32,768 tokens" in md
    assert "route flips: 7 of 12 turn pairs (5 conversations); 1 where the labels" in md
    assert "prefix cache vllm-primary: 32.2 % of 93,368 prompt tokens were hits" in md
    # Turns in order, TTFT in ms; the classifier by history band, with its token range.
    assert md.index("| 1 | 6 | 398 | 10,084 | 2,660 |") < md.index("| 2 | 6 | 11,508 |")
    assert "| 90%-100% | 3 | 30,138 - 32,662 |" in md


def test_report_html_has_the_conversation_tables() -> None:
    html = render_html(record())
    assert "<h2>Conversations</h2>" in html
    assert "Time to first token by turn" in html and "history length" in html
    assert "32.2 %" in html


def test_no_section_without_a_conversation_run() -> None:
    assert "## Conversations" not in render_markdown(fixtures.record())
    assert "<h2>Conversations</h2>" not in render_html(fixtures.record())
