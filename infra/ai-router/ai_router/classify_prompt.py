"""The classification request the router sends to the classifier engine.

This module is the single definition of what the classifier sees. The CPU twin trains its tiny
classifier on exactly these messages, so any change here must be followed by `harness twin build`.
"""

from __future__ import annotations

from typing import Any

ROUTES: tuple[str, ...] = ("local", "search")

CLASSIFY_SYSTEM_PROMPT = (
    "You are a request router. Read the conversation and decide who should answer the last "
    "user message. Answer search when it needs fresh facts from the web: news, current events, "
    "prices, weather, sports scores, schedules, anything happening today or lately. Answer local "
    "when it can be answered from knowledge and reasoning alone: code, math, writing, "
    "explanations, translation. Reply with exactly one word: local or search."
)


def message_text(content: Any) -> str:
    """Flatten an OpenAI message `content` (a string or a list of parts) into plain text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
            elif isinstance(part, str):
                parts.append(part)
        return "\n".join(parts)
    return str(content)


def classification_messages(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The whole conversation under the classification system prompt.

    Client system messages configure the answering model, not the route, so they are left out.
    Every user and assistant turn is kept, in order: nothing is truncated here. A conversation
    too long for the classifier must fail at the classifier and be flagged as a fallback.
    """
    out = [{"role": "system", "content": CLASSIFY_SYSTEM_PROMPT}]
    for m in messages:
        role = m.get("role")
        if role in ("user", "assistant"):
            out.append({"role": role, "content": message_text(m.get("content"))})
    return out
