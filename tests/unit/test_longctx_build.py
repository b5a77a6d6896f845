"""Conversations of an exact token count, against counters that behave like BPE: near-linear in
the padding, with words of several characters and the odd skipped count."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from harness.routing.longctx import Message, build, build_exact


def counter(chars_per_token: float, calls: list[int]):
    def count(messages: Sequence[Message]) -> int:
        calls.append(1)
        text = "".join(m["content"] for m in messages)
        # A token per word piece: words of the filler are 5-9 characters, so a count steps
        # unevenly as the padding grows by one character.
        return 12 + sum(max(1, round(len(w) / chars_per_token)) for w in text.split(" ") if w)

    return count


@pytest.mark.parametrize("target", [4096, 16384, 32595])
@pytest.mark.parametrize("placement", ["first", "last", "spread"])
def test_a_conversation_counts_the_target_in_a_few_counts(target: int, placement: str) -> None:
    calls: list[int] = []
    conv = build(
        counter(3.7, calls),
        lambda m: m,
        placement=placement,
        cue="what is the weather in Lisbon today",
        target_tokens=target,
        filler="alphabet mountains riverside seventeen crossing harbour",
    )
    assert target - 1 <= conv.tokens <= target
    assert counter(3.7, [])(conv.messages) == conv.tokens
    # Halving the 8-chars-per-token padding alone takes 16-19 counts.
    assert len(calls) <= 12, len(calls)


def test_exact_lands_on_a_count_that_one_character_steps_over() -> None:
    conv = build_exact(
        counter(2.5, []),
        lambda m: m,
        placement="last",
        cue="search the news",
        target_tokens=20001,
        filler="alphabet mountains riverside seventeen crossing harbour",
    )
    assert conv.tokens == 20001


def test_a_cue_longer_than_the_target_is_refused() -> None:
    with pytest.raises(ValueError, match="the cue alone"):
        build(counter(1.0, []), lambda m: m, placement="last", cue="x " * 50,
              target_tokens=10, filler="pad")  # fmt: skip
