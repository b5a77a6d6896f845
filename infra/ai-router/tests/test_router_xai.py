"""The search route: Responses request shape, translation back to chat, retries, error mapping."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import pytest
from flask.testing import FlaskClient
from router_fakes import (
    AUTH,
    XAI,
    XAI_KEY,
    Upstreams,
    chat_body,
    parse_sse,
    sse_events,
    xai_response,
    xai_stream,
)

XAI_URL = f"{XAI}/responses"


@pytest.fixture(autouse=True)
def _search(upstreams: Upstreams) -> None:
    upstreams.label = "search"


def sse(chunks: list[bytes]) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=iter(chunks))


def test_request_shape(client: FlaskClient, upstreams: Upstreams) -> None:
    body = chat_body()
    body["messages"] = [
        {"role": "system", "content": "be brief"},
        {"role": "developer", "content": "cite"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "user", "content": "latest news?"},
    ]
    client.post("/v1/chat/completions", json=body, headers=AUTH)
    (request,) = upstreams.calls(XAI_URL)
    assert request.headers["authorization"] == f"Bearer {XAI_KEY}"
    assert json.loads(request.content) == {
        "model": "grok-4-fast",
        "input": [
            {"role": "system", "content": "be brief"},
            {"role": "system", "content": "cite"},
            {"role": "user", "content": "a\nb"},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "latest news?"},
        ],
        "tools": [{"type": "web_search"}, {"type": "x_search"}],
        "max_output_tokens": 4096,
        "stream": False,
    }


def test_tools_follow_config(make_client: Callable[..., FlaskClient], upstreams: Upstreams) -> None:
    client = make_client(xai_search_tools=("x_search",), xai_model="grok-other")
    client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
    (sent,) = upstreams.bodies(XAI_URL)
    assert sent["tools"] == [{"type": "x_search"}]
    assert sent["model"] == "grok-other"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, 4096),
        ({"max_tokens": 100}, 4096),
        ({"max_completion_tokens": 200}, 4096),
        ({"max_tokens": 10000}, 10000),
        ({"max_completion_tokens": 5000}, 5000),
        ({"max_tokens": 5000, "max_completion_tokens": 6000}, 5000),
    ],
)
def test_max_output_tokens_floor(
    client: FlaskClient, upstreams: Upstreams, extra: dict[str, int], expected: int
) -> None:
    client.post("/v1/chat/completions", json=chat_body(**extra), headers=AUTH)
    assert upstreams.bodies(XAI_URL)[0]["max_output_tokens"] == expected


def test_non_stream_translation(client: FlaskClient, upstreams: Upstreams) -> None:
    response = xai_response("Part one. ")
    response["output"].append(
        {
            "type": "message",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "Part two."},
                {"type": "refusal", "refusal": "ignored"},
            ],
        }
    )
    response["output"].insert(0, {"type": "reasoning", "summary": [{"text": "not answer"}]})
    upstreams.xai = lambda r: httpx.Response(200, json=response)
    resp = client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
    assert resp.status_code == 200
    assert resp.headers["X-Route"] == "search"
    assert "X-Upstream-Retry" not in resp.headers
    body = resp.json
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["created"] == 1700000000
    assert body["model"] == "ai-router"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Part one. Part two."},
            "finish_reason": "stop",
        }
    ]
    assert body["usage"] == {
        "prompt_tokens": 21,
        "completion_tokens": 9,
        "total_tokens": 30,
        "completion_tokens_details": {"reasoning_tokens": 4},
    }


def test_incomplete_with_text_is_length(client: FlaskClient, upstreams: Upstreams) -> None:
    upstreams.xai = lambda r: httpx.Response(
        200, json=xai_response("Cut sh", status="incomplete", reason="max_output_tokens")
    )
    resp = client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
    assert resp.status_code == 200
    assert resp.json["choices"][0]["finish_reason"] == "length"
    assert resp.json["choices"][0]["message"]["content"] == "Cut sh"


def test_stream_translation_with_usage(client: FlaskClient, upstreams: Upstreams) -> None:
    upstreams.xai = lambda r: sse(xai_stream(["Hel", "lo", " world"]))
    body = chat_body(stream=True, stream_options={"include_usage": True})
    resp = client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert resp.headers["X-Route"] == "search"
    assert upstreams.bodies(XAI_URL)[0]["stream"] is True
    events = parse_sse(resp.data)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all(c["model"] == "ai-router" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"] == [
        {"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}
    ]
    assert [c["choices"][0]["delta"]["content"] for c in chunks[1:4]] == ["Hel", "lo", " world"]
    assert chunks[4]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    assert chunks[5]["choices"] == []
    assert chunks[5]["usage"] == {
        "prompt_tokens": 21,
        "completion_tokens": 9,
        "total_tokens": 30,
        "completion_tokens_details": {"reasoning_tokens": 4},
    }
    assert len(chunks) == 6


def test_stream_without_include_usage(client: FlaskClient, upstreams: Upstreams) -> None:
    final = xai_response("ok", status="incomplete", reason="max_output_tokens")
    upstreams.xai = lambda r: sse(xai_stream(["ok"], final, terminal="response.incomplete"))
    resp = client.post("/v1/chat/completions", json=chat_body(stream=True), headers=AUTH)
    events = parse_sse(resp.data)
    assert events[-1] == "[DONE]"
    assert all("usage" not in e for e in events[:-1])
    assert events[-2]["choices"][0]["finish_reason"] == "length"


def test_stream_ignores_keepalives_and_other_events(
    client: FlaskClient, upstreams: Upstreams
) -> None:
    chunks = xai_stream(["A", "B"])
    chunks.insert(1, b": keep-alive\n\n")
    chunks.insert(2, sse_events([("response.web_search_call.searching", {"item_id": "x"})])[0])
    chunks.append(b"data: [DONE]\n\n")
    # One event split over two network reads.
    joined = b"".join(chunks)
    upstreams.xai = lambda r: sse([joined[:37], joined[37:]])
    resp = client.post("/v1/chat/completions", json=chat_body(stream=True), headers=AUTH)
    deltas = [e["choices"][0]["delta"].get("content") for e in parse_sse(resp.data)[:-1]]
    assert deltas == [None, "A", "B", None]


@pytest.mark.parametrize("stream", [False, True])
def test_empty_output_retried_once_with_double_budget(
    client: FlaskClient, upstreams: Upstreams, stream: bool
) -> None:
    empty = xai_response(None, status="incomplete", reason="max_output_tokens")
    answers = iter([empty, xai_response("Second try.")])

    def handler(request: httpx.Request) -> httpx.Response:
        answer = next(answers)
        if not stream:
            return httpx.Response(200, json=answer)
        text = [] if answer is empty else ["Second try."]
        terminal = "response.incomplete" if answer is empty else "response.completed"
        return sse(xai_stream(text, answer, terminal=terminal))

    upstreams.xai = handler
    resp = client.post(
        "/v1/chat/completions", json=chat_body(stream=stream, max_tokens=5000), headers=AUTH
    )
    assert resp.status_code == 200
    assert resp.headers["X-Upstream-Retry"] == "empty_output"
    assert [b["max_output_tokens"] for b in upstreams.bodies(XAI_URL)] == [5000, 10000]
    if stream:
        text = "".join(
            e["choices"][0]["delta"].get("content", "") for e in parse_sse(resp.data)[:-1]
        )
    else:
        text = resp.json["choices"][0]["message"]["content"]
    assert text == "Second try."


@pytest.mark.parametrize("stream", [False, True])
def test_empty_output_twice_is_502(client: FlaskClient, upstreams: Upstreams, stream: bool) -> None:
    empty = xai_response(None, status="incomplete", reason="max_output_tokens")
    if stream:
        # whitespace-only text counts as empty too
        upstreams.xai = lambda r: sse(xai_stream([" ", "\n"], empty, "response.incomplete"))
    else:
        upstreams.xai = lambda r: httpx.Response(200, json=empty)
    resp = client.post("/v1/chat/completions", json=chat_body(stream=stream), headers=AUTH)
    assert resp.status_code == 502
    assert resp.headers["X-Upstream-Retry"] == "empty_output"
    assert resp.headers["X-Route"] == "search"
    message = resp.json["error"]["message"]
    assert "no text" in message
    assert "incomplete" in message
    assert "max_output_tokens" in message
    assert len(upstreams.calls(XAI_URL)) == 2


def test_completed_but_empty_is_retried(client: FlaskClient, upstreams: Upstreams) -> None:
    upstreams.xai = lambda r: httpx.Response(200, json=xai_response(""))
    resp = client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
    assert resp.status_code == 502
    assert "status=completed" in resp.json["error"]["message"]
    assert len(upstreams.calls(XAI_URL)) == 2


def _raise(exc: type[Exception]) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc("boom", request=request)  # type: ignore[call-arg]

    return handler


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("handler", "status", "code"),
    [
        (lambda r: httpx.Response(500, json={"error": "internal"}), 502, "bad_gateway"),
        (lambda r: httpx.Response(503, text="busy"), 502, "bad_gateway"),
        (lambda r: httpx.Response(401, json={"error": f"bad key {XAI_KEY}"}), 502, "bad_gateway"),
        (lambda r: httpx.Response(400, json={"code": "x", "error": "bad input"}), 400, None),
        (_raise(httpx.ReadTimeout), 504, "upstream_timeout"),
        (_raise(httpx.ConnectTimeout), 504, "upstream_timeout"),
        (_raise(httpx.ConnectError), 502, "bad_gateway"),
        (lambda r: httpx.Response(200, text="<html>"), 502, "bad_gateway"),
    ],
)
def test_error_mapping(
    client: FlaskClient,
    upstreams: Upstreams,
    handler: Callable[[httpx.Request], httpx.Response],
    status: int,
    code: str | None,
    stream: bool,
) -> None:
    upstreams.xai = handler
    resp = client.post("/v1/chat/completions", json=chat_body(stream=stream), headers=AUTH)
    assert resp.status_code == status
    assert resp.headers["X-Route"] == "search"
    assert XAI_KEY.encode() not in resp.data
    err = resp.json["error"]
    assert set(err) == {"message", "type", "param", "code"}
    if code:
        assert err["code"] == code
    if status == 400:
        assert "bad input" in err["message"]
    assert len(upstreams.calls(XAI_URL)) == 1  # only empty output is retried


@pytest.mark.parametrize("stream", [False, True])
def test_429_passes_retry_after(client: FlaskClient, upstreams: Upstreams, stream: bool) -> None:
    upstreams.xai = lambda r: httpx.Response(
        429, headers={"Retry-After": "12"}, json={"error": "slow down"}
    )
    resp = client.post("/v1/chat/completions", json=chat_body(stream=stream), headers=AUTH)
    assert resp.status_code == 429
    assert resp.headers["Retry-After"] == "12"
    assert resp.json["error"]["type"] == "rate_limit_error"


def test_429_without_retry_after(client: FlaskClient, upstreams: Upstreams) -> None:
    upstreams.xai = lambda r: httpx.Response(429, json={"error": "slow down"})
    resp = client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
    assert resp.status_code == 429
    assert "Retry-After" not in resp.headers


@pytest.mark.parametrize("stream", [False, True])
def test_failed_response_before_text_is_502(
    client: FlaskClient, upstreams: Upstreams, stream: bool
) -> None:
    failed = xai_response(None, status="failed")
    failed["error"] = {"code": "server_error", "message": "search backend down"}
    if stream:
        upstreams.xai = lambda r: sse(xai_stream([], failed, terminal="response.failed"))
    else:
        upstreams.xai = lambda r: httpx.Response(200, json=failed)
    resp = client.post("/v1/chat/completions", json=chat_body(stream=stream), headers=AUTH)
    assert resp.status_code == 502
    assert "search backend down" in resp.json["error"]["message"]


def test_stream_cut_before_completion_is_502(client: FlaskClient, upstreams: Upstreams) -> None:
    upstreams.xai = lambda r: sse(xai_stream([], {})[:1])
    resp = client.post("/v1/chat/completions", json=chat_body(stream=True), headers=AUTH)
    assert resp.status_code == 502


def _failing_after_text(exc: Exception | None) -> Iterator[bytes]:
    yield from xai_stream(["partial"])[:2]
    if exc is not None:
        raise exc
    yield from sse_events([("response.failed", {"response": {"error": {"message": "oops"}}})])


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (httpx.ReadTimeout("slow"), "upstream_timeout"),
        (httpx.RemoteProtocolError("reset"), "bad_gateway"),
        (None, "bad_gateway"),
    ],
)
def test_error_after_first_byte_is_in_band(
    client: FlaskClient, upstreams: Upstreams, exc: Exception | None, code: str
) -> None:
    upstreams.xai = lambda r: httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content=_failing_after_text(exc)
    )
    resp = client.post("/v1/chat/completions", json=chat_body(stream=True), headers=AUTH)
    assert resp.status_code == 200
    events = parse_sse(resp.data)
    assert events[1]["choices"][0]["delta"]["content"] == "partial"
    assert events[-2]["error"]["code"] == code
    assert set(events[-2]["error"]) == {"message", "type", "param", "code"}
    assert events[-1] == "[DONE]"


@pytest.mark.parametrize("stream", [False, True])
def test_not_configured_is_503(
    make_client: Callable[..., FlaskClient], upstreams: Upstreams, stream: bool
) -> None:
    client = make_client(xai_api_key="")
    resp = client.post("/v1/chat/completions", json=chat_body(stream=stream), headers=AUTH)
    assert resp.status_code == 503
    assert "xAI is not configured" in resp.json["error"]["message"]
    assert resp.headers["X-Route"] == "search"
    assert upstreams.calls(XAI) == []
