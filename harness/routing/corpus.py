"""The routing corpus and the filler text the twin trains on, and conversations built from them."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

_DATA = Path(__file__).resolve().parents[1] / "data"
ROUTING_TRAIN = _DATA / "routing" / "train.jsonl"
ROUTING_EVAL = _DATA / "routing" / "eval.jsonl"
FILLER_TEXT = _DATA / "twin" / "filler.txt"

Message = dict[str, str]


@dataclass(frozen=True)
class RoutingItem:
    id: str
    messages: tuple[Message, ...]
    route: str

    @property
    def question(self) -> str:
        """The last user message, the one the route is about."""
        for m in reversed(self.messages):
            if m["role"] == "user":
                return m["content"]
        raise ValueError(f"routing item {self.id} has no user message")


def load_routing(path: Path) -> list[RoutingItem]:
    """Records {"id", "messages", "route", "tags"}, one per line, in file order."""
    items = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        rec = json.loads(line)
        msgs = tuple(
            {"role": str(m["role"]), "content": str(m.get("content") or "")}
            for m in rec["messages"]
        )
        items.append(RoutingItem(id=str(rec.get("id", lineno)), messages=msgs, route=rec["route"]))
    return items


def scored(items: Sequence[RoutingItem], routes: Sequence[str]) -> list[RoutingItem]:
    """Items with a definite route; "either" items are never scored or trained on."""
    return [it for it in items if it.route in routes]


def load_filler(path: Path) -> list[str]:
    """Non-empty, non-comment lines: neutral assistant-style sentences."""
    lines = (ln.strip() for ln in path.read_text(encoding="utf-8").splitlines())
    return [ln for ln in lines if ln and not ln.startswith("#")]


def tokenizer_texts(items: Sequence[RoutingItem], filler: Sequence[str]) -> list[str]:
    """Every text the tokenizer is trained on, in a fixed order."""
    texts = [m["content"] for it in items for m in it.messages]
    texts.extend(filler)
    return texts


def assistant_reply(rng: random.Random, filler: Sequence[str]) -> str:
    return " ".join(rng.sample(list(filler), k=min(len(filler), rng.randint(1, 3))))


def history_pairs(
    rng: random.Random,
    pool: Sequence[RoutingItem],
    filler: Sequence[str],
    n_pairs: int,
) -> list[Message]:
    """n_pairs earlier user/assistant turns, user turns drawn from both routes.

    Earlier questions of either route teach the classifier that only the last user message
    decides the route.
    """
    out: list[Message] = []
    for _ in range(n_pairs):
        out.append({"role": "user", "content": rng.choice(pool).question})
        out.append({"role": "assistant", "content": assistant_reply(rng, filler)})
    return out


def long_history(
    pool: Sequence[RoutingItem],
    filler: Sequence[str],
    tokens: int,
    count_tokens: Callable[[str], int],
    seed: int,
) -> list[Message]:
    """Earlier turns of both routes adding up to about `tokens` tokens of conversation."""
    rng = random.Random(seed)
    out: list[Message] = []
    count = 0
    while count < tokens:
        pair = history_pairs(rng, pool, filler, 1)
        # About four template tokens frame each message.
        count += sum(count_tokens(m["content"]) + 4 for m in pair)
        out.extend(pair)
    return out


def long_reply_history(
    rng: random.Random,
    pool: Sequence[RoutingItem],
    filler: Sequence[str],
    tokens: int,
    count_tokens: Callable[[str], int],
) -> list[Message]:
    """One user turn, then one assistant turn of about `tokens` tokens of filler sentences.

    The other long shape a conversation takes: a single very long reply before the question.
    """
    parts: list[str] = []
    count = 0
    while count < tokens:
        sentence = rng.choice(filler)
        count += count_tokens(sentence) + 1
        parts.append(sentence)
    return [
        {"role": "user", "content": rng.choice(pool).question},
        {"role": "assistant", "content": " ".join(parts)},
    ]
