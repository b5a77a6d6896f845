"""The local route: body forwarding, untouched answers, raw SSE passthrough, error mapping."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from flask.testing import FlaskClient
from router_fakes import AUTH, PRIMARY, Upstreams, chat_body, chat_completion, parse_sse

PRIMARY_URL = f"{PRIMARY}/v1/chat/completions"

STREAM_CHUNKS = [
    b'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,'
    b'"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n',
    # one event split across two reads, and two events in one read: passed on as read
    b'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"reas',
    b'oning":"think"},"finish_reason":null}]}\n\ndata: {"id":"c1","object":"chat.completion.chunk'
    b'","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}]}\n\n',
    b'data: {"id":"c1","object":"chat.completion.chunk","choices":[],'
    b'"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}\n\n',
    b"data: [DONE]\n\n",
]


def sse_response(chunks: list[bytes]) -> Callable[[httpx.Request], httpx.Response]:
    return lambda r: httpx.Response(
        200, headers={"content-type": "text/event-stream; charset=utf-8"}, content=iter(chunks)
    )


def test_body_forwarded_with_model_replaced(client: FlaskClient, upstreams: Upstreams) -> None:
    body = chat_body(
        temperature=0.3, max_tokens=50, tools=[{"type": "function"}], chat_template_kwargs={}
    )
    client.post("/v1/chat/completions", json=body, headers=AUTH)
    (sent,) = upstreams.bodies(PRIMARY_URL)
    assert sent == {**body, "model": "primary-model"}


def test_non_stream_answer_is_returned_as_is(client: FlaskClient, upstreams: Upstreams) -> None:
    answer = chat_completion("42", reasoning="because", reasoning_content="because")
    raw = json.dumps(answer, indent=1).encode()
    upstreams.primary = lambda r: httpx.Response(200, content=raw)
    resp = client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
    assert resp.status_code == 200
    assert resp.data == raw
    assert resp.json["choices"][0]["message"]["reasoning"] == "because"
    assert resp.json["choices"][0]["message"]["reasoning_content"] == "because"
    assert resp.headers["Content-Type"].startswith("application/json")


def test_stream_passthrough_is_byte_exact(client: FlaskClient, upstreams: Upstreams) -> None:
    upstreams.primary = sse_response(STREAM_CHUNKS)
    body = chat_body(stream=True, stream_options={"include_usage": True})
    resp = client.post("/v1/chat/completions", json=body, headers=AUTH, buffered=False)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert resp.headers["X-Route"] == "local"
    # Chunk boundaries survive: each upstream read is one write to the client.
    assert list(resp.response) == STREAM_CHUNKS
    (sent,) = upstreams.bodies(PRIMARY_URL)
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert upstreams.calls(PRIMARY_URL)[0].headers["accept-encoding"] == "identity"


def test_stream_passthrough_parses(client: FlaskClient, upstreams: Upstreams) -> None:
    upstreams.primary = sse_response(STREAM_CHUNKS)
    resp = client.post("/v1/chat/completions", json=chat_body(stream=True), headers=AUTH)
    events = parse_sse(resp.data)
    assert events[-1] == "[DONE]"
    assert events[-2]["usage"]["completion_tokens"] == 3


def test_stream_that_sends_nothing_is_502(client: FlaskClient, upstreams: Upstreams) -> None:
    upstreams.primary = sse_response([])
    resp = client.post("/v1/chat/completions", json=chat_body(stream=True), headers=AUTH)
    assert resp.status_code == 502
    assert resp.json["error"]["message"]


def test_stream_interrupted_mid_way(client: FlaskClient, upstreams: Upstreams) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        yield STREAM_CHUNKS[0]
        yield b'data: {"id":"c1","obj'
        raise httpx.ReadTimeout("slow")

    upstreams.primary = lambda r: httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content=chunks()
    )
    resp = client.post("/v1/chat/completions", json=chat_body(stream=True), headers=AUTH)
    assert resp.status_code == 200
    assert resp.data.startswith(STREAM_CHUNKS[0])
    tail = resp.data[len(STREAM_CHUNKS[0]) :].split(b"\n\n")
    error = json.loads(tail[1].removeprefix(b"data: "))
    assert error["error"]["code"] == "upstream_timeout"
    assert resp.data.endswith(b"data: [DONE]\n\n")


def _raise(exc: type[Exception]) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc("boom", request=request)  # type: ignore[call-arg]

    return handler


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("handler", "status"),
    [
        (lambda r: httpx.Response(500, json={"error": {"message": "CUDA oom"}}), 502),
        (lambda r: httpx.Response(503, text="down"), 502),
        (lambda r: httpx.Response(404, json={"error": {"message": "no model"}}), 502),
        (lambda r: httpx.Response(401, text="who are you"), 502),
        (
            lambda r: httpx.Response(
                400, json={"error": {"message": "maximum context length is 8192"}}
            ),
            400,
        ),
        (lambda r: httpx.Response(413, text="big"), 413),
        (lambda r: httpx.Response(200, text=""), 502),
        (_raise(httpx.ReadTimeout), 504),
        (_raise(httpx.ConnectError), 502),
    ],
)
def test_primary_error_mapping(
    client: FlaskClient,
    upstreams: Upstreams,
    handler: Callable[[httpx.Request], httpx.Response],
    status: int,
    stream: bool,
) -> None:
    upstreams.primary = handler
    resp = client.post("/v1/chat/completions", json=chat_body(stream=stream), headers=AUTH)
    assert resp.status_code == status
    assert resp.headers["X-Route"] == "local"
    err = resp.json["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"]
    if status == 400:
        assert "maximum context length" in err["message"]


def test_primary_429_passes_retry_after(client: FlaskClient, upstreams: Upstreams) -> None:
    upstreams.primary = lambda r: httpx.Response(429, headers={"Retry-After": "7"}, text="slow")
    resp = client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
    assert resp.status_code == 429
    assert resp.headers["Retry-After"] == "7"
    assert resp.json["error"]["type"] == "rate_limit_error"
