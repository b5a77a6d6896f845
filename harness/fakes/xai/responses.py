"""The xAI Responses API shapes the fake xAI answers with: the reply object, its usage with
reasoning tokens, and the stream of server-sent events."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeGuard

Json = dict[str, Any]


def is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


DEFAULT_MAX_OUTPUT_TOKENS = 4096  # "empty_length" usage when the request sets no limit
ECHO_CHARS = 40  # how much of the last user input the answer echoes


@dataclass(frozen=True)
class Usage:
    """Token counts; ``output_tokens`` includes ``reasoning_tokens``."""

    input_tokens: int
    output_tokens: int
    reasoning_tokens: int

    def to_json(self) -> Json:
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": self.input_tokens + self.output_tokens,
        }


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _content_text(content: object) -> str:
    """Text of a message ``content``: a string or a list of ``{"type", "text"}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = (p.get("text") for p in content if isinstance(p, dict))
        return " ".join(p for p in parts if isinstance(p, str))
    return ""


def _input_messages(input_: object) -> list[Json]:
    if isinstance(input_, str):
        return [{"role": "user", "content": input_}]
    return [m for m in input_ if isinstance(m, dict)] if isinstance(input_, list) else []


def count_tokens(text: str) -> int:
    """The fake's token estimate: whitespace-separated words."""
    return len(text.split())


def answer_text(input_: object) -> str:
    """The deterministic answer: says it is fake and echoes the last user input's start."""
    users = [m for m in _input_messages(input_) if m.get("role") == "user"]
    last = " ".join(_content_text(users[-1].get("content")).split()) if users else ""
    return f"Fake xAI search answer for: {last[:ECHO_CHARS]}"


def input_tokens(body: Json) -> int:
    """The words of every input message (at least 1)."""
    texts = [_content_text(m.get("content")) for m in _input_messages(body.get("input"))]
    return max(1, count_tokens(" ".join(texts)))


def build_response(body: Json, mode: str = "ok") -> Json:
    """The non-streaming ``/v1/responses`` reply for ``body`` (mode ``ok`` or ``empty_length``)."""
    reply: Json = {
        "id": _new_id("resp"),
        "object": "response",
        "created_at": int(time.time()),
        "model": body.get("model"),
    }
    if mode == "empty_length":
        limit = body.get("max_output_tokens")
        limit = limit if is_int(limit) else DEFAULT_MAX_OUTPUT_TOKENS
        return reply | {
            "status": "incomplete",
            "incomplete_details": {"reason": "max_output_tokens"},
            "output": [
                {"type": "reasoning", "id": _new_id("rs"), "summary": [], "status": "incomplete"},
                {
                    "type": "message",
                    "id": _new_id("msg"),
                    "role": "assistant",
                    "status": "incomplete",
                    "content": [],
                },
            ],
            "usage": Usage(input_tokens(body), limit, limit).to_json(),
        }
    text = answer_text(body.get("input"))
    visible = count_tokens(text)  # as many tokens again go to reasoning
    return reply | {
        "status": "completed",
        "incomplete_details": None,
        "output": [
            {"type": "web_search_call", "id": _new_id("ws"), "status": "completed"},
            {
                "type": "message",
                "id": _new_id("msg"),
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            },
        ],
        "usage": Usage(input_tokens(body), 2 * visible, visible).to_json(),
    }


def stream_events(response: Json) -> Iterator[Json]:
    """The server-sent events that stream ``response``, ending with its full object."""
    yield {
        "type": "response.created",
        "response": response | {"status": "in_progress", "output": [], "usage": None},
    }
    for index, item in enumerate(response["output"]):
        parts = item.get("content", [])
        started = (item | {"status": "in_progress", "content": []}) if parts else item
        yield {"type": "response.output_item.added", "output_index": index, "item": started}
        for content_index, part in enumerate(parts):
            place = {"item_id": item["id"], "output_index": index, "content_index": content_index}
            yield {"type": "response.content_part.added", **place, "part": part | {"text": ""}}
            for delta in re.findall(r"\s*\S+", part["text"]):
                yield {"type": "response.output_text.delta", **place, "delta": delta}
            yield {"type": "response.output_text.done", **place, "text": part["text"]}
            yield {"type": "response.content_part.done", **place, "part": part}
        yield {"type": "response.output_item.done", "output_index": index, "item": item}
    final = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
    yield {"type": final, "response": response}
