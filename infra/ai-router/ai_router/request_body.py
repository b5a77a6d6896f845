"""Parse and validate a client's chat body before anything else looks at it.

Every later module indexes into the body freely, so a malformed body must be rejected here as a
400; otherwise a client mistake would surface as a KeyError/TypeError and a 500.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ai_router.errors import ApiError

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


@dataclass(frozen=True)
class ChatRequest:
    body: dict[str, Any]
    messages: list[dict[str, Any]]
    stream: bool
    include_usage: bool
    max_tokens: int | None


def parse_json_object(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise ApiError(400, "Request body is empty; expected a JSON object")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        # ValueError covers both bad JSON and bad UTF-8; RecursionError is absurd nesting.
        raise ApiError(400, "Request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "Request body must be a JSON object")
    return data


def parse_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if messages is None:
        raise ApiError(400, "'messages' is required", param="messages")
    if not isinstance(messages, list):
        raise ApiError(400, "'messages' must be an array", param="messages")
    if not messages:
        raise ApiError(400, "'messages' must not be empty", param="messages")
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise ApiError(400, f"'{where}' must be an object", param=where)
        role = m.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise ApiError(
                400, f"'{where}.role' must be one of: {', '.join(sorted(ROLES))}", param=where
            )
        content = m.get("content")
        if content is not None and not isinstance(content, str | list):
            raise ApiError(400, f"'{where}.content' must be a string or an array", param=where)
        if isinstance(content, list) and not all(isinstance(p, dict | str) for p in content):
            raise ApiError(400, f"'{where}.content' parts must be objects", param=where)
    return messages


def parse_chat_request(raw: bytes) -> ChatRequest:
    body = parse_json_object(raw)
    messages = parse_messages(body)
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise ApiError(400, "'stream' must be a boolean", param="stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise ApiError(400, "'stream_options' must be an object", param="stream_options")
    include_usage = (options or {}).get("include_usage", False)
    if include_usage is None:
        include_usage = False
    if not isinstance(include_usage, bool):
        raise ApiError(
            400, "'stream_options.include_usage' must be a boolean", param="stream_options"
        )
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise ApiError(400, "'model' must be a string", param="model")
    limits = []
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ApiError(400, f"'{name}' must be a positive integer", param=name)
        limits.append(value)
    return ChatRequest(
        body=body,
        messages=messages,
        stream=stream,
        include_usage=include_usage,
        max_tokens=limits[0] if limits else None,
    )
