"""Conversations of an exact token count, measured with the classifier engine's own /tokenize.

The classifier sees `classification_messages(conversation)` through its chat template, so the
count is taken on exactly that. Padding is neutral filler text in assistant turns; the routing
cue is placed in the last message, in the first message (filler after it), or spread over many
turns. Binary search over the padding length finds the longest padding whose count is at most
the target; BPE adds at most one token per character, so that count is almost always exact.
`build_exact` makes it exact where a test needs one precise count (a limit and one token past it).

The primary sees the client's messages as they are, through its own template: count those with
`as_sent` as the wrapper and the primary's /tokenize.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

Message = dict[str, str]
PLACEMENTS = ("last", "first", "spread")


@dataclass(frozen=True)
class Conversation:
    placement: str
    target_tokens: int
    tokens: int  # what /tokenize says the classifier will see
    messages: list[Message]


class Tokenizer:
    """Counts through an engine's POST /tokenize."""

    def __init__(self, http: httpx.Client, base_url: str, model: str) -> None:
        self.http, self.url, self.model = http, base_url.rstrip("/"), model

    def count_messages(self, messages: Sequence[Message]) -> int:
        r = self.http.post(
            self.url + "/tokenize",
            json={"model": self.model, "messages": list(messages), "add_generation_prompt": True},
        )
        r.raise_for_status()
        return int(r.json()["count"])

    def count_prompt(self, prompt: str) -> int:
        return len(self.token_ids(prompt))

    def token_ids(self, prompt: str) -> list[int]:
        r = self.http.post(self.url + "/tokenize", json={"model": self.model, "prompt": prompt})
        r.raise_for_status()
        return [int(t) for t in r.json()["tokens"]]


def as_sent(messages: list[Message]) -> list[Message]:
    """The messages as the client sends them: what the primary renders, with no router prompt."""
    return list(messages)


def label_budget(tok: Tokenizer, labels: Sequence[str]) -> int:
    """The classifier's output budget as the router computes it: longest label + 1 token."""
    return max(tok.count_prompt(label) for label in labels) + 1


def _shape(placement: str, cue: str, pad: str, turns: int) -> list[Message]:
    if placement == "last":
        return [
            {"role": "user", "content": "Hello, I have a few things to ask."},
            {"role": "assistant", "content": pad},
            {"role": "user", "content": cue},
        ]
    if placement == "first":
        return [
            {"role": "user", "content": cue},
            {"role": "assistant", "content": pad},
            {"role": "user", "content": "Thanks, go on."},
        ]
    if placement == "spread":
        words = cue.split()
        k = max(2, min(turns, len(words)))
        parts = [" ".join(words[i::k]) for i in range(k)]
        size = len(pad) // k
        msgs: list[Message] = []
        for i, part in enumerate(parts):
            msgs.append({"role": "user", "content": part})
            if i < k - 1:
                msgs.append({"role": "assistant", "content": pad[i * size : (i + 1) * size]})
        return msgs
    raise ValueError(f"unknown placement {placement!r}; one of {PLACEMENTS}")


def build(
    count: Callable[[Sequence[Message]], int],
    wrap: Callable[[list[Message]], list[Message]],
    *,
    placement: str,
    cue: str,
    target_tokens: int,
    filler: str,
    turns: int = 8,
) -> Conversation:
    """A conversation whose wrapped form counts `target_tokens` (or just under, if BPE skips)."""

    # Enough filler for the target at a pessimistic 8 chars per token.
    pad_text = (filler + " ") * (target_tokens * 8 // max(1, len(filler) + 1) + 1)
    pad_text = pad_text[: target_tokens * 8]

    def tokens(n_chars: int) -> int:
        return count(wrap(_shape(placement, cue, pad_text[:n_chars], turns)))

    base = tokens(0)
    if base > target_tokens:
        raise ValueError(f"the cue alone is {base} tokens, more than the target {target_tokens}")
    # The count grows almost linearly with the padding, so interpolate between the bracket's
    # ends; every step that fails to halve the bracket is followed by a halving step. A
    # conversation of 32k tokens takes about 5 counts instead of 18 halvings.
    lo, f_lo = 0, base
    hi = len(pad_text)
    f_hi = tokens(hi)
    if f_hi <= target_tokens:
        lo, f_lo = hi, f_hi
    interpolate = True
    while hi - lo > 1 and f_lo < target_tokens:
        if interpolate and f_hi > f_lo:
            mid = lo + round((target_tokens - f_lo) * (hi - lo) / (f_hi - f_lo))
        else:
            mid = (lo + hi) // 2
        mid = min(max(mid, lo + 1), hi - 1)
        width = hi - lo
        f = tokens(mid)
        if f <= target_tokens:
            lo, f_lo = mid, f
        else:
            hi, f_hi = mid, f
        interpolate = not interpolate or 2 * (hi - lo) <= width
    return Conversation(
        placement, target_tokens, f_lo, _shape(placement, cue, pad_text[:lo], turns)
    )


def build_exact(
    count: Callable[[Sequence[Message]], int],
    wrap: Callable[[list[Message]], list[Message]],
    *,
    placement: str,
    cue: str,
    target_tokens: int,
    filler: str,
    attempts: int = 8,
) -> Conversation:
    """Like `build`, but the count is exactly `target_tokens`.

    One more character of padding can add two tokens at once, stepping over the target. Another
    tokenization of the padding then lands on it: the filler is rotated by one word per attempt.
    The first attempt is `build`'s own conversation, so its prefix is shared with (and cached
    from) conversations built the same way.
    """
    words = filler.split()
    counts: list[int] = []
    for shift in range(min(attempts, max(1, len(words)))):
        rotated = " ".join(words[shift:] + words[:shift]) if shift else filler
        conv = build(
            count, wrap, placement=placement, cue=cue, target_tokens=target_tokens, filler=rotated
        )
        if conv.tokens == target_tokens:
            return conv
        counts.append(conv.tokens)
    raise ValueError(
        f"no padding counts exactly {target_tokens} tokens ({placement} cue); got {counts}"
    )
