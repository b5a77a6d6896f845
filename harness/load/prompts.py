"""Prompts for load users: short chats of both routes, and long contexts that share no prefix.

Prefix caching shares KV blocks between prompts with a common prefix, which would hide KV use,
so every long prompt starts with a different token sequence from its first token.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

from harness.routing.corpus import FILLER_TEXT, ROUTING_TRAIN, load_filler, load_routing


def chat_prompts(route: str | None = None) -> list[str]:
    """Single-turn questions from the routing corpus, of one route or both."""
    items = load_routing(ROUTING_TRAIN)
    return [it.question for it in items if len(it.messages) == 1 and (route in (None, it.route))]


def prompt_routes() -> dict[str, str]:
    """Each single-turn question of the routing corpus and the route it is labelled with."""
    items = load_routing(ROUTING_TRAIN)
    return {it.question: it.route for it in items if len(it.messages) == 1}


def prompt_key(question: str) -> str:
    """A labelled prompt's identity in the records: a digest, not the text."""
    return hashlib.sha256(question.encode()).hexdigest()[:16]


def chat_user_prompts(search_allowed: bool) -> list[str]:
    """The chat users' prompts: both routes, or only `local` ones when no chat may be sent that
    the router would forward to xAI (an attached stack's paid search without --harness-xai)."""
    return chat_prompts() if search_allowed else chat_prompts("local")


def filler_sentences() -> list[str]:
    return load_filler(FILLER_TEXT)


def long_prompt(
    rng: random.Random, sentences: Sequence[str], target_chars: int, request_no: int
) -> str:
    """About `target_chars` of filler, opening with a unique tag, ending with a local question."""
    head = f"Document {request_no}-{rng.randrange(10**9)}: "
    parts = [head]
    size = len(head)
    while size < target_chars:
        s = rng.choice(sentences)
        parts.append(s)
        size += len(s) + 1
    parts.append("\n\nSummarize the document above in one sentence.")
    return " ".join(parts)
