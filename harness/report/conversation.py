"""The conversation profile's figures in the reports: TTFT by turn, the classifier's time by
history length, route flips within a conversation, and the engines' prefix-cache hit rate
(harness.load.conversations computes them; the record keeps them under
load.conversation.conversation)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.report.svg import esc, md_table, table
from harness.units import count, number, percent

TURN_HEAD = ["turn", "requests", "TTFT p50 ms", "TTFT p95 ms", "TTFT mean ms"]
HISTORY_HEAD = [
    "history (of max-model-len)", "requests", "tokens", "classifier p50 ms",
    "classifier p95 ms", "trimmed",
]  # fmt: skip


def _section(doc: Mapping[str, Any]) -> Mapping[str, Any] | None:
    sec = ((doc.get("load") or {}).get("conversation") or {}).get("conversation")
    return sec or None


def _ms(seconds: Any) -> str:
    return "-" if seconds is None else number(float(seconds) * 1000)


def turn_rows(sec: Mapping[str, Any]) -> list[list[str]]:
    by_turn = sec.get("ttft_by_turn_s") or {}
    return [
        [turn, count(s.get("n")), _ms(s.get("p50")), _ms(s.get("p95")), _ms(s.get("mean"))]
        for turn, s in sorted(by_turn.items(), key=lambda kv: int(kv[0]))
    ]


def history_rows(sec: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for band, s in (sec.get("classifier_ms_by_history") or {}).items():
        lo, hi = s.get("history_tokens_min"), s.get("history_tokens_max")
        tokens = "-" if lo is None else f"{count(lo)} - {count(hi)}"
        p50, p95 = s.get("p50"), s.get("p95")
        rows.append([
            band, count(s.get("n")), tokens, "-" if p50 is None else number(p50),
            "-" if p95 is None else number(p95), count(s.get("trimmed")),
        ])  # fmt: skip
    return rows


def lines(sec: Mapping[str, Any]) -> list[str]:
    """The sentences above the tables: shape, trimming, flips, prefix cache."""
    out = [
        f"{count(sec.get('requests'))} turns in {count(sec.get('conversations'))} "
        f"conversations; longest history {count(sec.get('history_tokens_max'))} of "
        f"{count(sec.get('max_model_len'))} tokens; {count(sec.get('turns_in_last_10pct'))} "
        f"turns in the last 10 %, {count(sec.get('trimmed'))} classified on trimmed history"
    ]
    flips = sec.get("route_flips") or {}
    if flips:
        out.append(
            f"route flips: {count(flips.get('flips'))} of {count(flips.get('turn_pairs'))} "
            f"turn pairs ({count(flips.get('conversations_with_flip'))} conversations); "
            f"{count(flips.get('unexpected_flips'))} where the labels did not change, "
            f"{count(flips.get('missed_flips'))} missed where they did"
        )
    for engine, pc in sorted((sec.get("prefix_cache") or {}).items()):
        rate = pc.get("hit_rate")
        out.append(
            f"prefix cache {engine}: {percent(rate) if rate is not None else '-'} of "
            f"{count(pc.get('queries'))} prompt tokens were hits"
        )
    return out


def markdown(doc: Mapping[str, Any]) -> list[str]:
    """report.md's conversation section; [] when the run had no conversation profile."""
    sec = _section(doc)
    if sec is None:
        return []
    out = ["## Conversations", "", *(f"- {line}" for line in lines(sec)), ""]
    out += [*md_table(TURN_HEAD, turn_rows(sec)), ""]
    return [*out, *md_table(HISTORY_HEAD, history_rows(sec)), ""]


def html(doc: Mapping[str, Any]) -> str:
    """report.html's conversation section; '' when the run had no conversation profile."""
    sec = _section(doc)
    if sec is None:
        return ""
    items = "".join(f"<li>{esc(line)}</li>" for line in lines(sec))
    return (
        f"<h2>Conversations</h2><ul>{items}</ul><h3>Time to first token by turn</h3>"
        + table(TURN_HEAD, turn_rows(sec))
        + "<h3>The classifier's time by history length</h3>"
        + table(HISTORY_HEAD, history_rows(sec))
    )
