"""The local route: forward the chat body to the primary vLLM engine, untouched but for `model`.

The answer goes back as-is: reasoning fields (message.reasoning / reasoning_content) and the
exact SSE framing are part of what the harness measures, so nothing here re-encodes them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx

from ai_router.config import Config
from ai_router.errors import ApiError, error_body, from_upstream_status
from ai_router.reply import SSE_CONTENT_TYPE, Reply
from ai_router.request_body import ChatRequest
from ai_router.sse import DONE, UsageWatcher, sse_data
from ai_router.timing import current

NAME = "primary engine"


class Primary:
    def __init__(self, config: Config, client: httpx.Client) -> None:
        self._config = config
        self._client = client

    def serve(self, req: ChatRequest) -> Reply:
        body = {**req.body, "model": self._config.primary_model}
        request = self._client.build_request(
            "POST",
            f"{self._config.primary_url}/v1/chat/completions",
            json=body,
            # identity: raw bytes are passed through, so they must not arrive compressed.
            headers={"Accept-Encoding": "identity"},
            timeout=self._config.upstream_timeout_s,
            extensions=current().upstream_extensions(),
        )
        return self._stream(request) if req.stream else self._complete(request)

    def _complete(self, request: httpx.Request) -> Reply:
        resp = _send(self._client, request, stream=False)
        if not resp.is_success:
            raise from_upstream_status(NAME, resp.status_code, resp.content, resp.headers)
        try:
            data = json.loads(resp.content)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            # A 200 the client cannot parse is worse than an honest 502.
            raise ApiError(502, f"{NAME} returned a body that is not a JSON object")
        reply = Reply(body=resp.content)
        reply.usage.update_from(data.get("usage"))
        return reply

    def _stream(self, request: httpx.Request) -> Reply:
        resp = _send(self._client, request, stream=True)
        try:
            if not resp.is_success:
                resp.read()
                current().first_byte()
                raise from_upstream_status(NAME, resp.status_code, resp.content, resp.headers)
            # In-memory transports hand over an already-read body; a socket never does.
            chunks = iter([resp.content]) if resp.is_stream_consumed else resp.iter_raw()
            # Wait for the first bytes before committing to a 200, so that an engine that
            # fails or says nothing still gets an honest HTTP error.
            first = _first_chunk(chunks)
            current().first_byte()
        except BaseException:
            resp.close()
            raise
        reply = Reply(content_type=resp.headers.get("content-type", SSE_CONTENT_TYPE))
        reply.stream = _passthrough(resp, first, chunks, reply)
        return reply


def _send(client: httpx.Client, request: httpx.Request, *, stream: bool) -> httpx.Response:
    timing = current()
    timing.asking()
    try:
        resp = client.send(request, stream=stream)
        if not stream:
            timing.first_byte()
        return resp
    except httpx.TimeoutException:
        raise ApiError(504, f"{NAME} timed out") from None
    except httpx.HTTPError:
        raise ApiError(502, f"{NAME} is unreachable") from None


def _first_chunk(chunks: Iterator[bytes]) -> bytes:
    try:
        for chunk in chunks:
            if chunk:
                return chunk
    except httpx.TimeoutException:
        raise ApiError(504, f"{NAME} timed out before sending any data") from None
    except httpx.HTTPError:
        raise ApiError(502, f"{NAME} dropped the stream before sending any data") from None
    raise ApiError(502, f"{NAME} ended the stream without sending any data")


def _passthrough(
    resp: httpx.Response, first: bytes, chunks: Iterator[bytes], reply: Reply
) -> Iterator[bytes]:
    watcher = UsageWatcher(reply.usage)
    try:
        watcher.feed(first)
        yield first
        try:
            # iter_raw yields whatever each socket read returned: no re-chunking, no delay.
            for chunk in chunks:
                watcher.feed(chunk)
                yield chunk
        except httpx.HTTPError as exc:
            timed_out = isinstance(exc, httpx.TimeoutException)
            reply.stream_error = "upstream_timeout" if timed_out else "bad_gateway"
            message = f"{NAME} stream interrupted ({reply.stream_error})"
            # Close any half-written event first so the error is parsed as its own event.
            yield (
                (b"\n\n" if watcher.mid_line else b"")
                + sse_data(error_body(message, "upstream_error", reply.stream_error))
                + DONE
            )
            return
        watcher.close()
    finally:
        resp.close()
