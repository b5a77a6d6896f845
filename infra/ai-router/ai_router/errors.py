"""OpenAI-shaped errors, and how upstream failures map onto them.

OpenAI SDKs pick their exception class from the status and read `error.message`, so every
failure, including the router's own, must use that shape and a status that blames the right
party: 4xx only when the client can fix it, 5xx only when the router or an upstream is at fault.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# status -> (OpenAI error type, default code)
_KINDS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("authentication_error", "invalid_api_key"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", "internal_error"),
    502: ("upstream_error", "bad_gateway"),
    503: ("service_unavailable_error", "service_unavailable"),
    504: ("timeout_error", "upstream_timeout"),
}

_MAX_UPSTREAM_MESSAGE = 500


# eq=False keeps exceptions hashable and compared by identity, as Python expects.
@dataclass(eq=False)
class ApiError(Exception):
    """Raised anywhere in request handling; the app renders it as an OpenAI error response."""

    status: int
    message: str
    code: str | None = None
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)
        if self.code is None:
            self.code = _KINDS.get(self.status, ("", "error"))[1]

    @property
    def type(self) -> str:
        default = "invalid_request_error" if self.status < 500 else "server_error"
        return _KINDS.get(self.status, (default, ""))[0]

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.code, self.param)


def error_body(
    message: str, type_: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def upstream_message(body: bytes, secret: str = "") -> str:
    """A short human message from an upstream error body, whatever dialect it speaks.

    vLLM and OpenAI nest it under error.message, older vLLM puts it at top level, xAI uses a
    string `error`. The secret is scrubbed in case an upstream echoes the credential back.
    """
    text = body.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    message = text
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            message = err["message"]
        elif isinstance(err, str):
            message = err
        elif isinstance(data.get("message"), str):
            message = data["message"]
    if secret:
        message = message.replace(secret, "***")
    message = " ".join(message.split())
    return message[:_MAX_UPSTREAM_MESSAGE]


def from_upstream_status(
    name: str, status: int, body: bytes, headers: Any, secret: str = ""
) -> ApiError:
    """Map a non-2xx upstream answer to the error the router's client should see.

    Request-shape rejections (400/413/422) are the client's to fix and keep the upstream's
    message. Auth/404 rejections mean the router itself is misconfigured, so they are a 502 and
    the upstream text is withheld (it may describe the router's credential).
    """
    if status == 429:
        extra = {}
        retry_after = headers.get("retry-after") if headers is not None else None
        if retry_after:
            extra["Retry-After"] = retry_after
        return ApiError(429, f"{name} is rate limiting requests; retry later", headers=extra)
    if status in (400, 422):
        return ApiError(400, f"{name} rejected the request: {upstream_message(body, secret)}")
    if status == 413:
        return ApiError(413, f"{name} rejected the request as too large")
    if 400 <= status < 500:
        return ApiError(502, f"{name} refused the router's request (HTTP {status})")
    detail = upstream_message(body, secret)
    suffix = f": {detail}" if detail else ""
    return ApiError(502, f"{name} failed (HTTP {status}){suffix}")
