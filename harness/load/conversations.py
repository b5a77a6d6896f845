"""The conversation profile: multi-turn conversations through the ai-router, and its report.

A user holds one conversation at a time. Each turn sends the whole history: its earlier user
turns and the assistant's actual replies, then a new question from the routing corpus, of
either route. Between turns the user thinks (THINK_S). Every LONG_EVERY-th conversation grows
across the classifier's headroom band (harness.routing.headroom): its second turn pastes
filler notes before its question, up to LONG_FRACTION of the primary's max-model-len (the last
10 %), and its third lands inside the band, where the primary still serves the conversation but
the classifier holds only its recent part (`classified:trimmed-history`). The band is measured
with the classifier's own /tokenize (`measure_band`), and a padded turn is fitted to its target
with the same counts (`fit_padding`), so where it lands does not depend on a guessed
characters-per-token. With another tokenizer on the primary (the GPU stack) the count is the
classifier's, so the landing is approximate; the band's middle leaves room either side.

Each turn's shape goes to TURN_LOG beside requests.jsonl, one line per request, joined on
request_id: the conversation, the turn index, the message count and the history's tokens.
`conversation_report` reads both and the engines' /metrics and reports TTFT per turn index, the
classifier's latency (X-Classifier-Ms) by history length, route flips within a conversation,
trimmed turns and each engine's prefix-cache hit rate.

No locust import here: the runner reads the report in the harness process.
"""

from __future__ import annotations

import itertools
import json
import random
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.load.records import RequestRecord
from harness.load.stats import percentile
from harness.telemetry.prom import Scrape

Message = dict[str, str]
Count = Callable[[list[Message]], int]

TURN_LOG = "conversations.jsonl"
TRIMMED = "classified:trimmed-history"
# One conversation in LONG_EVERY grows into the band; the first of each process does, so that a
# short run has one.
LONG_EVERY = 5
# The long conversation's second turn: inside the last 10 % before max-model-len.
LONG_FRACTION = 0.92
# Where in the band (from its low edge) a band turn aims: the middle, with room either side.
BAND_AIM = 0.5
# Without a band (a classifier with more context than the primary): the last turn's target.
NO_BAND_FRACTION = 0.97
SHORT_TURNS = (2, 4)
THINK_S = (0.5, 1.5)
# A padded turn is accepted this close below its target, in tokens.
FIT_TOLERANCE = 24
# History length buckets, as fractions of the primary's max-model-len.
HISTORY_BUCKETS = (0.1, 0.5, 0.9, 1.0)
PREFIX_HITS = ("vllm:prefix_cache_hits_total", "vllm:prefix_cache_hits")
PREFIX_QUERIES = ("vllm:prefix_cache_queries_total", "vllm:prefix_cache_queries")
NOTES = "My notes so far: "


@dataclass(frozen=True)
class PlannedTurn:
    question: str
    route: str  # the route the corpus labels the question with
    # The history as sent, in tokens, that this turn is padded up to; None: not padded.
    target_tokens: int | None = None
    band: bool = False  # aimed into the classifier's headroom band


@dataclass(frozen=True)
class Band:
    """The classifier's headroom as the router sees it, in the primary's tokens (conversation
    as sent), measured with the classifier's tokenizer."""

    classifier_max_model_len: int
    label_budget: int
    prompt_overhead: int  # classification prompt tokens around a conversation
    primary_max_model_len: int

    @property
    def low(self) -> int:
        """The shortest conversation the classifier holds only trimmed."""
        return self.classifier_max_model_len - self.label_budget - self.prompt_overhead + 1

    @property
    def high(self) -> int:
        """The longest conversation the primary still serves (one output token)."""
        return self.primary_max_model_len - 1

    def target(self) -> int | None:
        if self.low > self.high:
            return None
        return self.low + int((self.high - self.low) * BAND_AIM)


def measure_band(post: Callable[[dict[str, Any]], dict[str, Any]], model: str,
                 primary_max_model_len: int) -> Band:  # fmt: skip
    """The band from the classifier's /tokenize (`post` sends one body and returns the JSON):
    its max_model_len, the router's label budget (the longest label + 1) and the classification
    prompt's tokens around a small conversation."""
    from ai_router.classify_prompt import ROUTES, classification_messages

    sample: list[Message] = [
        {"role": "user", "content": "Hello, I have a few things to ask."},
        {"role": "assistant", "content": "Sure, go ahead."},
        {"role": "user", "content": "What is the weather in Paris today?"},
    ]

    def chat(messages: list[Message]) -> dict[str, Any]:
        return post({"model": model, "messages": messages, "add_generation_prompt": True})

    wrapped = chat(classification_messages(sample))
    budget = max(int(post({"model": model, "prompt": label})["count"]) for label in ROUTES) + 1
    return Band(
        classifier_max_model_len=int(wrapped["max_model_len"]),
        label_budget=budget,
        prompt_overhead=int(wrapped["count"]) - int(chat(sample)["count"]),
        primary_max_model_len=primary_max_model_len,
    )


def is_long(number: int) -> bool:
    return number % LONG_EVERY == 0


def plan(
    rng: random.Random,
    number: int,
    prompts: Mapping[str, Sequence[str]],
    primary_max_model_len: int,
    band_target: int | None,
) -> list[PlannedTurn]:
    """Conversation `number`'s turns. `prompts`: the corpus questions by route (only `local`
    where search may not be used). A long one asks a search question, then a local one at
    LONG_FRACTION of max-model-len, then a local one in the band: a route flip, and two local
    turns whose shared prefix the primary can serve from its cache. A short one has 2-4 turns
    of routes drawn at random, unpadded."""
    routes = sorted(r for r, qs in prompts.items() if qs)
    if not routes:
        raise ValueError("no questions to ask: the routing corpus gave none")

    def ask(route: str, target: int | None = None, band: bool = False) -> PlannedTurn:
        route = route if route in routes else routes[0]
        return PlannedTurn(rng.choice(list(prompts[route])), route, target, band)

    if is_long(number):
        last = band_target or int(primary_max_model_len * NO_BAND_FRACTION)
        return [
            ask("search"),
            ask("local", int(primary_max_model_len * LONG_FRACTION)),
            ask("local", last, band=band_target is not None),
        ]
    n = rng.randint(*SHORT_TURNS)
    return [ask(rng.choice(routes)) for _ in range(n)]


def notes(rng: random.Random, sentences: Sequence[str], chars: int) -> str:
    """At least `chars` characters of filler sentences, to paste before a question."""
    parts: list[str] = []
    size = 0
    while size < chars:
        s = rng.choice(sentences)
        parts.append(s)
        size += len(s) + 1
    return " ".join(parts)


def padded(pad: str, n: int, question: str) -> str:
    return f"{NOTES}{pad[:n]}\n\n{question}" if n > 0 else question


def fit_padding(
    count: Count,
    history: list[Message],
    question: str,
    pad: str,
    target: int,
    tolerance: int = FIT_TOLERANCE,
) -> tuple[str, int]:
    """The user message (filler notes, then the question) that brings the history as sent to
    within `tolerance` tokens below `target`, and its count. The count grows almost linearly
    with the notes' length, so the search interpolates, halving where that is slow; it never
    returns a message past the target. Raises ValueError when `pad` is too short for it."""

    def tokens(n: int) -> int:
        return count([*history, {"role": "user", "content": padded(pad, n, question)}])

    lo, f_lo = 0, tokens(0)
    if f_lo >= target - tolerance:
        return padded(pad, 0, question), f_lo
    hi, f_hi = len(pad), tokens(len(pad))
    if f_hi <= target:
        if f_hi < target - tolerance:
            raise ValueError(f"{len(pad):,} characters of notes reach {f_hi:,} < {target:,}")
        return padded(pad, hi, question), f_hi
    interpolate = True
    for _ in range(40):
        if hi - lo <= 1 or f_lo >= target - tolerance:
            break
        if interpolate and f_hi > f_lo:
            mid = lo + round((target - tolerance // 2 - f_lo) * (hi - lo) / (f_hi - f_lo))
        else:
            mid = (lo + hi) // 2
        mid = min(max(mid, lo + 1), hi - 1)
        f = tokens(mid)
        if f <= target:
            lo, f_lo = mid, f
        else:
            hi, f_hi = mid, f
        interpolate = not interpolate
    return padded(pad, lo, question), f_lo


def reply_text(sse: bytes) -> str:
    """The assistant's answer from a chat completion's SSE body: its content deltas joined."""
    parts: list[str] = []
    for line in sse.replace(b"\r\n", b"\n").split(b"\n"):
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if not data or data == b"[DONE]":
            continue
        try:
            obj = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        for choice in obj.get("choices") or () if isinstance(obj, dict) else ():
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                parts.append(delta["content"])
    return "".join(parts)


@dataclass(frozen=True)
class TurnLine:
    """One request's place in its conversation: what TURN_LOG holds, never message text."""

    request_id: str
    conversation: str
    turn: int  # 1 for the first user message
    turns_planned: int
    messages: int
    history_tokens: int | None  # the history as sent, on the classifier's tokenizer
    history_chars: int
    padded: bool
    band: bool
    expected_route: str

    def line(self) -> str:
        return json.dumps(vars(self), separators=(",", ":"))


def read_turns(path: Path) -> dict[str, TurnLine]:
    out: dict[str, TurnLine] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        if line.strip():
            t = TurnLine(**json.loads(line))
            out[t.request_id] = t
    return out


def _stats(values: Sequence[float]) -> dict[str, float | None]:
    return {
        "n": float(len(values)),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "mean": statistics.fmean(values) if values else None,
    }


def history_bucket(tokens: int, max_model_len: int) -> str:
    """The HISTORY_BUCKETS band a history length falls in, as "lo-hi%" of max-model-len."""
    lower = 0.0
    for upper in HISTORY_BUCKETS:
        if tokens <= upper * max_model_len:
            return f"{lower:.0%}-{upper:.0%}"
        lower = upper
    return f">{HISTORY_BUCKETS[-1]:.0%}"


def prefix_cache(first: Scrape, last: Scrape) -> dict[str, float | None]:
    """Prefix-cache hits and queries (tokens) over the window, and their ratio."""
    hits = last.value(PREFIX_HITS) - first.value(PREFIX_HITS)
    queries = last.value(PREFIX_QUERIES) - first.value(PREFIX_QUERIES)
    exposed = any(last.has(n) for n in (*PREFIX_HITS, *PREFIX_QUERIES))
    return {
        "hits": hits if exposed else None,
        "queries": queries if exposed else None,
        "hit_rate": round(hits / queries, 4) if exposed and queries > 0 else None,
    }


def route_flips(turns: Sequence[tuple[TurnLine, RequestRecord]]) -> dict[str, int]:
    """Consecutive answered turns of one conversation whose route changed, and whether the
    corpus labels said it should."""
    by_conv: dict[str, list[tuple[TurnLine, RequestRecord]]] = {}
    for t, r in turns:
        if r.route:
            by_conv.setdefault(t.conversation, []).append((t, r))
    pairs = flips = expected = unexpected = missed = with_flip = 0
    for seq in by_conv.values():
        seq.sort(key=lambda tr: tr[0].turn)
        flipped = False
        for (ta, ra), (tb, rb) in itertools.pairwise(seq):
            pairs += 1
            want = ta.expected_route != tb.expected_route
            got = ra.route != rb.route
            flips += got
            flipped |= got
            expected += want
            unexpected += got and not want
            missed += want and not got
        with_flip += flipped
    return {
        "turn_pairs": pairs,
        "flips": flips,
        "conversations_with_flip": with_flip,
        "expected_flips": expected,
        "unexpected_flips": unexpected,
        "missed_flips": missed,
    }


def conversation_report(
    records: Sequence[RequestRecord],
    turns: Mapping[str, TurnLine],
    first: Mapping[str, Scrape],
    last: Mapping[str, Scrape],
    max_model_len: int,
) -> dict[str, Any]:
    """The conversation profile's figures (the module docstring lists them)."""
    joined = [(turns[r.request_id], r) for r in records if r.request_id and r.request_id in turns]
    ok = [(t, r) for t, r in joined if r.ok]
    by_turn: dict[int, list[float]] = {}
    for t, r in ok:
        if r.ttft_s is not None:
            by_turn.setdefault(t.turn, []).append(r.ttft_s)
    by_history: dict[str, dict[str, Any]] = {}
    for t, r in joined:
        if t.history_tokens is None or r.classifier_ms is None:
            continue
        label = history_bucket(t.history_tokens, max_model_len)
        row = by_history.setdefault(label, {"ms": [], "tokens": [], "trimmed": 0})
        row["ms"].append(r.classifier_ms)
        row["tokens"].append(t.history_tokens)
        row["trimmed"] += r.reason == TRIMMED
    per_conv: dict[str, int] = {}
    for t, _ in joined:
        per_conv[t.conversation] = max(per_conv.get(t.conversation, 0), t.turn)
    histories = [t.history_tokens for t, _ in joined if t.history_tokens is not None]
    band = [(t, r) for t, r in joined if t.band]
    return {
        "requests": len(joined),
        "unjoined_records": len(records) - len(joined),
        "conversations": len(per_conv),
        "turns_per_conversation": {
            str(n): list(per_conv.values()).count(n) for n in sorted(set(per_conv.values()))
        },
        "max_model_len": max_model_len,
        "history_tokens_max": max(histories) if histories else None,
        "turns_in_last_10pct": sum(h >= 0.9 * max_model_len for h in histories),
        "padded_turns": sum(t.padded for t, _ in joined),
        "band_turns": len(band),
        "band_turns_trimmed": sum(r.reason == TRIMMED for _, r in band),
        "trimmed": sum(r.reason == TRIMMED for r in records),
        "ttft_by_turn_s": {str(k): _stats(v) for k, v in sorted(by_turn.items())},
        "classifier_ms_by_history": {
            label: {
                **_stats(row["ms"]),
                "history_tokens_min": min(row["tokens"]),
                "history_tokens_max": max(row["tokens"]),
                "trimmed": row["trimmed"],
            }
            for label, row in sorted(by_history.items(), key=lambda kv: min(kv[1]["tokens"]))
        },
        "route_flips": route_flips(joined),
        "prefix_cache": {e: prefix_cache(first[e], last[e]) for e in sorted(first) if e in last},
    }
