"""The search route: answer through xAI's Responses API with its server-side search tools.

Clients speak chat.completions, so requests are mapped to a Responses call and the answer (or
its event stream) is translated back. xAI's reasoning models can spend their whole output
budget thinking and return no text; the router treats that as a failure to retry once with a
bigger budget, and never as an empty 200.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx

from ai_router.classify_prompt import message_text
from ai_router.config import Config
from ai_router.errors import ApiError, error_body, from_upstream_status
from ai_router.reply import SSE_CONTENT_TYPE, Reply
from ai_router.request_body import ChatRequest
from ai_router.sse import DONE, Event, iter_events, sse_data
from ai_router.timing import current

log = logging.getLogger("ai_router.xai")

NAME = "xAI"
RETRY_HEADER = "X-Upstream-Retry"
RETRY_EMPTY_OUTPUT = "empty_output"

TEXT_DELTA = "response.output_text.delta"
FINISHED = frozenset({"response.completed", "response.incomplete"})
FAILED = frozenset({"response.failed", "error"})

# The Responses API input has no tool-result message without a matching call id, and
# "developer" is not accepted everywhere; both fold into roles every provider understands.
_ROLE_MAP = {"developer": "system", "tool": "user", "function": "user"}


class XaiSearch:
    def __init__(self, config: Config, client: httpx.Client) -> None:
        self._config = config
        self._client = client

    def serve(self, req: ChatRequest) -> Reply:
        if not self._config.xai_configured:
            raise ApiError(
                503,
                "xAI is not configured (XAI_API_KEY is empty): the search route is unavailable",
                code="xai_not_configured",
            )
        tokens = max(req.max_tokens or 0, self._config.xai_min_max_tokens)
        retry_headers: dict[str, str] = {}
        status, reason = "unknown", "none"
        for attempt in range(2):
            try:
                reply, empty = (self._stream if req.stream else self._complete)(req, tokens)
            except ApiError as exc:
                # A failure on the retry must still say that a retry happened.
                exc.headers.update(retry_headers)
                raise
            if reply is not None:
                reply.headers.update(retry_headers)
                return reply
            status, reason = _status(empty)
            if attempt == 0:
                log.warning(
                    "xAI returned no text (status=%s, reason=%s); retrying with "
                    "max_output_tokens=%d",
                    status,
                    reason,
                    tokens * 2,
                )
                tokens *= 2
                retry_headers = {RETRY_HEADER: RETRY_EMPTY_OUTPUT}
        raise ApiError(
            502,
            f"xAI returned no text (status={status}, reason={reason}), also after one retry "
            f"with max_output_tokens={tokens}",
            code="empty_output",
            headers=retry_headers,
        )

    # One attempt each: (reply, {}) when there is text, (None, xAI response) when there is none.

    def _complete(self, req: ChatRequest, tokens: int) -> tuple[Reply | None, dict[str, Any]]:
        resp = self._send(self._request(req, tokens, stream=False), stream=False)
        if not resp.is_success:
            raise self._status_error(resp)
        try:
            data = json.loads(resp.content)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ApiError(502, "xAI returned a body that is not a JSON object")
        if data.get("status") == "failed":
            raise ApiError(502, f"xAI response failed: {self._failure_message(data)}")
        text = output_text(data)
        if not text.strip():
            return None, data
        usage = chat_usage(data.get("usage"))
        body = {
            "id": _chat_id(data),
            "object": "chat.completion",
            "created": _created(data),
            "model": self._config.model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish_reason(data),
                }
            ],
            "usage": usage,
        }
        reply = Reply(body=json.dumps(body).encode())
        if isinstance(data.get("usage"), dict):
            reply.usage.update_from(usage)
        return reply, {}

    def _stream(self, req: ChatRequest, tokens: int) -> tuple[Reply | None, dict[str, Any]]:
        resp = self._send(self._request(req, tokens, stream=True), stream=True)
        try:
            if not resp.is_success:
                resp.read()
                current().first_byte()
                raise self._status_error(resp)
            events = iter_events(resp.iter_lines())
            # Read ahead to the first real text before sending headers: until then the status
            # can still become an error, and an empty answer can still be retried.
            head, finished = self._read_head(events)
            current().first_byte()
        except BaseException:
            resp.close()
            raise
        if finished is not None:
            resp.close()
            return None, finished
        reply = Reply(content_type=SSE_CONTENT_TYPE)
        reply.stream = self._translate(resp, events, head, req, reply)
        return reply, {}

    def _read_head(self, events: Iterator[Event]) -> tuple[list[str], dict[str, Any] | None]:
        head: list[str] = []
        try:
            for event in events:
                if event.type == TEXT_DELTA:
                    delta = event.data.get("delta")
                    if isinstance(delta, str) and delta:
                        head.append(delta)
                        if "".join(head).strip():
                            return head, None
                elif event.type in FINISHED:
                    return head, _response_of(event)
                elif event.type in FAILED:
                    raise ApiError(502, f"xAI response failed: {self._event_error(event)}")
        except httpx.TimeoutException:
            raise ApiError(504, "xAI timed out before sending any text") from None
        except httpx.HTTPError:
            raise ApiError(502, "xAI dropped the stream before sending any text") from None
        raise ApiError(502, "xAI ended the stream before the response completed")

    def _translate(
        self,
        resp: httpx.Response,
        events: Iterator[Event],
        head: list[str],
        req: ChatRequest,
        reply: Reply,
    ) -> Iterator[bytes]:
        chunk_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return sse_data(
                {
                    "id": chunk_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": self._config.model_name,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
            )

        try:
            yield chunk({"role": "assistant"})
            for text in head:
                yield chunk({"content": text})
            finished: dict[str, Any] | None = None
            failure: tuple[str, str] | None = None
            try:
                for event in events:
                    if event.type == TEXT_DELTA:
                        piece = event.data.get("delta")
                        if isinstance(piece, str) and piece:
                            yield chunk({"content": piece})
                    elif event.type in FINISHED:
                        finished = _response_of(event)
                        break
                    elif event.type in FAILED:
                        detail = self._event_error(event)
                        failure = ("bad_gateway", f"xAI response failed: {detail}")
                        break
            except httpx.TimeoutException:
                failure = ("upstream_timeout", "xAI timed out mid-stream")
            except httpx.HTTPError:
                failure = ("bad_gateway", "xAI dropped the stream")
            if finished is None:
                code, message = failure or ("bad_gateway", "xAI stream ended before completion")
                # Headers are gone, so the error travels in-band, shaped as OpenAI does it.
                reply.stream_error = code
                yield sse_data(error_body(message, "upstream_error", code)) + DONE
                return
            usage = chat_usage(finished.get("usage"))
            if isinstance(finished.get("usage"), dict):
                reply.usage.update_from(usage)
            yield chunk({}, finish_reason(finished))
            if req.include_usage:
                yield sse_data(
                    {
                        "id": chunk_id,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": self._config.model_name,
                        "choices": [],
                        "usage": usage,
                    }
                )
            yield DONE
        finally:
            resp.close()

    def _request(self, req: ChatRequest, tokens: int, *, stream: bool) -> httpx.Request:
        payload = {
            "model": self._config.xai_model,
            "input": to_input(req.messages),
            "tools": self._config.xai_tools,
            "max_output_tokens": tokens,
            "stream": stream,
        }
        return self._client.build_request(
            "POST",
            f"{self._config.xai_base_url}/responses",
            json=payload,
            headers={"Authorization": f"Bearer {self._config.xai_api_key}"},
            timeout=self._config.upstream_timeout_s,
            extensions=current().upstream_extensions(),
        )

    def _send(self, request: httpx.Request, *, stream: bool) -> httpx.Response:
        timing = current()
        timing.asking()
        try:
            resp = self._client.send(request, stream=stream)
            if not stream:
                timing.first_byte()
            return resp
        except httpx.TimeoutException:
            raise ApiError(504, "xAI timed out") from None
        except httpx.HTTPError:
            raise ApiError(502, "xAI is unreachable") from None

    def _status_error(self, resp: httpx.Response) -> ApiError:
        return from_upstream_status(
            NAME, resp.status_code, resp.content, resp.headers, self._config.xai_api_key
        )

    def _failure_message(self, response: dict[str, Any]) -> str:
        err = response.get("error")
        message = err.get("message") if isinstance(err, dict) else err
        return self._scrub(message if isinstance(message, str) else "no detail")

    def _event_error(self, event: Event) -> str:
        if event.type == "error":
            return self._failure_message({"error": event.data.get("error") or event.data})
        return self._failure_message(_response_of(event))

    def _scrub(self, text: str) -> str:
        key = self._config.xai_api_key
        return text.replace(key, "***")[:500] if key else text[:500]


def to_input(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [
        {"role": _ROLE_MAP.get(m["role"], m["role"]), "content": message_text(m.get("content"))}
        for m in messages
    ]


def output_text(response: dict[str, Any]) -> str:
    """The answer text: every output_text part of every message item, in order."""
    parts: list[str] = []
    output = response.get("output")
    for item in output if isinstance(output, list) else []:
        if not isinstance(item, dict) or item.get("type") != "message":
            continue
        content = item.get("content")
        for part in content if isinstance(content, list) else []:
            if isinstance(part, dict) and part.get("type") == "output_text":
                text = part.get("text")
                if isinstance(text, str):
                    parts.append(text)
    return "".join(parts)


def finish_reason(response: dict[str, Any]) -> str:
    if response.get("status") != "incomplete":
        return "stop"
    details = response.get("incomplete_details")
    reason = details.get("reason") if isinstance(details, dict) else None
    return "content_filter" if reason == "content_filter" else "length"


def chat_usage(usage: Any) -> dict[str, Any]:
    """Responses usage (input/output tokens) renamed to chat.completions usage."""
    u = usage if isinstance(usage, dict) else {}
    details = u.get("output_tokens_details")
    prompt = _count(u.get("input_tokens"))
    completion = _count(u.get("output_tokens"))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": _count(u.get("total_tokens")) or prompt + completion,
        "completion_tokens_details": {
            "reasoning_tokens": _count(
                details.get("reasoning_tokens") if isinstance(details, dict) else 0
            )
        },
    }


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _response_of(event: Event) -> dict[str, Any]:
    response = event.data.get("response")
    return response if isinstance(response, dict) else {}


def _status(response: dict[str, Any]) -> tuple[str, str]:
    details = response.get("incomplete_details")
    reason = details.get("reason") if isinstance(details, dict) else None
    return str(response.get("status") or "unknown"), str(reason or "none")


def _chat_id(response: dict[str, Any]) -> str:
    rid = response.get("id")
    return f"chatcmpl-{rid}" if isinstance(rid, str) and rid else f"chatcmpl-{uuid.uuid4().hex}"


def _created(response: dict[str, Any]) -> int:
    created = response.get("created_at")
    if isinstance(created, int | float) and not isinstance(created, bool):
        return int(created)
    return int(time.time())
