"""HTTP surface: auth, body validation, size limit, /v1/route, /v1/models, /health, 404/405."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from flask.testing import FlaskClient
from router_fakes import (
    AUTH,
    CLASSIFIER,
    OTHER_KEY,
    PRIMARY,
    ROUTER_KEY,
    XAI,
    Upstreams,
    chat_body,
)
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

PROTECTED = [
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/route"),
    ("GET", "/v1/models"),
    ("POST", "/health"),
    ("GET", "/nowhere"),
]

BAD_AUTH: list[dict[str, str]] = [
    {},
    {"Authorization": "Bearer wrong-key"},
    {"Authorization": f"Bearer {ROUTER_KEY}x"},
    {"Authorization": f"Bearer {ROUTER_KEY[:-1]}"},
    {"Authorization": ROUTER_KEY},
    {"Authorization": f"Basic {ROUTER_KEY}"},
    {"Authorization": "Bearer "},
    {"Authorization": "Bearer ключ"},
]


def assert_openai_error(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status
    assert resp.headers["Content-Type"].startswith("application/json")
    err = resp.json["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    return err


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize("headers", BAD_AUTH)
def test_401_without_valid_key(
    client: FlaskClient, upstreams: Upstreams, method: str, path: str, headers: dict[str, str]
) -> None:
    resp = client.open(path, method=method, json=chat_body(), headers=headers)
    err = assert_openai_error(resp, 401)
    assert err["type"] == "authentication_error"
    assert ROUTER_KEY not in resp.get_data(as_text=True)
    assert upstreams.requests == []


@pytest.mark.parametrize("key", [ROUTER_KEY, OTHER_KEY])
def test_every_configured_key_works(client: FlaskClient, key: str) -> None:
    headers = {"Authorization": f"bearer {key}"}
    assert client.get("/v1/models", headers=headers).status_code == 200
    assert client.post("/v1/route", json=chat_body(), headers=headers).status_code == 200
    assert client.post("/v1/chat/completions", json=chat_body(), headers=headers).status_code == 200


def test_health_needs_no_key(client: FlaskClient) -> None:
    assert client.get("/health").status_code == 200
    assert client.head("/health").status_code == 200


def test_404_and_405_are_openai_errors(client: FlaskClient) -> None:
    assert_openai_error(client.get("/v1/nothing", headers=AUTH), 404)
    resp = client.get("/v1/chat/completions", headers=AUTH)
    assert_openai_error(resp, 405)
    assert "POST" in resp.headers["Allow"]
    assert_openai_error(client.post("/v1/models", headers=AUTH), 405)


def test_models(client: FlaskClient, upstreams: Upstreams) -> None:
    resp = client.get("/v1/models", headers=AUTH)
    assert resp.status_code == 200
    assert resp.json["object"] == "list"
    (model,) = resp.json["data"]
    assert model["id"] == "ai-router"
    assert model["object"] == "model"
    assert upstreams.requests == []


def test_route_only_calls_no_upstream(client: FlaskClient, upstreams: Upstreams) -> None:
    upstreams.label = "search"
    resp = client.post("/v1/route", json=chat_body(), headers=AUTH)
    assert resp.status_code == 200
    assert resp.json["route"] == "search"
    assert resp.json["reason"] == "classified"
    assert isinstance(resp.json["classifier_ms"], int)
    assert resp.headers["X-Route"] == "search"
    assert resp.headers["X-Route-Reason"] == "classified"
    assert resp.headers["X-Classifier-Ms"] == str(resp.json["classifier_ms"])
    assert all(str(r.url).startswith(CLASSIFIER) for r in upstreams.requests)
    assert upstreams.calls(PRIMARY) == [] and upstreams.calls(XAI) == []


def test_route_only_reports_fallback(client: FlaskClient, upstreams: Upstreams) -> None:
    upstreams.classify = lambda r: httpx.Response(502, text="bad gateway")
    resp = client.post("/v1/route", json=chat_body(), headers=AUTH)
    assert resp.json == {
        "route": "local",
        "reason": "fallback:classifier_5xx",
        "classifier_ms": resp.json["classifier_ms"],
    }
    assert resp.headers["X-Route-Reason"] == "fallback:classifier_5xx"


MALFORMED: list[bytes] = [
    b"",
    b"   ",
    b"{not json",
    b"\xff\xfe\x00",
    b"[]",
    b'"text"',
    b"null",
    b"[" * 100000,
    json.dumps({}).encode(),
    json.dumps({"messages": None}).encode(),
    json.dumps({"messages": "hi"}).encode(),
    json.dumps({"messages": {"role": "user"}}).encode(),
    json.dumps({"messages": []}).encode(),
    json.dumps({"messages": ["hi"]}).encode(),
    json.dumps({"messages": [None]}).encode(),
    json.dumps({"messages": [{"content": "no role"}]}).encode(),
    json.dumps({"messages": [{"role": "wizard", "content": "x"}]}).encode(),
    json.dumps({"messages": [{"role": 7, "content": "x"}]}).encode(),
    json.dumps({"messages": [{"role": "user", "content": 5}]}).encode(),
    json.dumps({"messages": [{"role": "user", "content": {"text": "x"}}]}).encode(),
    json.dumps({"messages": [{"role": "user", "content": [1, 2]}]}).encode(),
]

MALFORMED_CHAT_ONLY: list[dict[str, Any]] = [
    chat_body(stream="yes"),
    chat_body(stream=1),
    chat_body(stream_options="on"),
    chat_body(stream=True, stream_options={"include_usage": "yes"}),
    chat_body(max_tokens="10"),
    chat_body(max_tokens=0),
    chat_body(max_tokens=True),
    chat_body(max_completion_tokens=-5),
    chat_body(max_completion_tokens=1.5),
    chat_body(model=["a"]),
]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/route"])
@pytest.mark.parametrize("raw", MALFORMED)
def test_malformed_bodies_are_400(
    client: FlaskClient, upstreams: Upstreams, path: str, raw: bytes
) -> None:
    resp = client.post(path, data=raw, headers={**AUTH, "Content-Type": "application/json"})
    err = assert_openai_error(resp, 400)
    assert err["type"] == "invalid_request_error"
    assert upstreams.requests == []


@pytest.mark.parametrize("body", MALFORMED_CHAT_ONLY)
def test_malformed_chat_fields_are_400(
    client: FlaskClient, upstreams: Upstreams, body: dict[str, Any]
) -> None:
    resp = client.post("/v1/chat/completions", json=body, headers=AUTH)
    err = assert_openai_error(resp, 400)
    assert err["param"]
    assert upstreams.requests == []


def test_accepted_shapes(client: FlaskClient) -> None:
    body = chat_body(stream=None, stream_options=None, max_tokens=None)
    body["messages"] += [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},
        {"role": "tool", "content": "42", "tool_call_id": "1"},
        {"role": "user", "content": [{"type": "text", "text": "ok"}, "plain"]},
    ]
    resp = client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert resp.status_code == 200


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/route"])
def test_413_over_body_limit(
    make_client: Callable[..., FlaskClient], upstreams: Upstreams, path: str
) -> None:
    client = make_client(max_body_bytes=1000)
    resp = client.post(path, json=chat_body("x" * 2000), headers=AUTH)
    err = assert_openai_error(resp, 413)
    assert "ROUTER_MAX_BODY_BYTES" in err["message"]
    assert upstreams.requests == []
    assert client.post(path, json=chat_body("x" * 500), headers=AUTH).status_code == 200


def test_413_reads_the_refused_body_to_its_end(
    make_client: Callable[..., FlaskClient], upstreams: Upstreams
) -> None:
    """Behind traefik, a 413 answered on an unread body resets the connection and the client
    gets traefik's 502: the refused body is read to its declared end first."""
    client = make_client(max_body_bytes=1000)
    body = json.dumps(chat_body("x" * 5000)).encode()
    environ = EnvironBuilder(
        path="/v1/chat/completions",
        method="POST",
        data=body,
        headers={**AUTH, "Content-Type": "application/json"},
    ).get_environ()
    stream = io.BytesIO(body)
    environ["wsgi.input"] = stream
    assert_openai_error(client.open(Request(environ)), 413)
    assert stream.tell() == len(body)
    assert upstreams.requests == []


def test_413_without_content_length(
    make_client: Callable[..., FlaskClient], upstreams: Upstreams
) -> None:
    """A chunked upload (no Content-Length, as gunicorn presents it) is cut off at the limit."""
    client = make_client(max_body_bytes=1000)
    body = json.dumps(chat_body("x" * 5000)).encode()
    environ = EnvironBuilder(
        path="/v1/chat/completions",
        method="POST",
        data=body,
        headers={**AUTH, "Content-Type": "application/json"},
    ).get_environ()
    del environ["CONTENT_LENGTH"]
    environ["wsgi.input_terminated"] = True
    environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    environ["wsgi.input"] = io.BytesIO(body)
    assert_openai_error(client.open(Request(environ)), 413)
    assert upstreams.requests == []


def test_health_both_up(client: FlaskClient, upstreams: Upstreams) -> None:
    resp = client.get("/health")
    assert resp.status_code == 200
    assert resp.json["classifier"] == {"ok": True, "status": 200}
    assert resp.json["primary"] == {"ok": True, "status": 200}
    assert {str(r.url) for r in upstreams.requests} == {
        f"{CLASSIFIER}/health",
        f"{PRIMARY}/health",
    }


@pytest.mark.parametrize("down", ["classifier", "primary"])
@pytest.mark.parametrize(
    ("handler", "detail"),
    [
        (lambda r: httpx.Response(503), {"ok": False, "status": 503}),
        (
            lambda r: (_ for _ in ()).throw(httpx.ConnectError("refused", request=r)),
            {"ok": False, "status": None, "error": "unreachable"},
        ),
        (
            lambda r: (_ for _ in ()).throw(httpx.ReadTimeout("slow", request=r)),
            {"ok": False, "status": None, "error": "timeout"},
        ),
    ],
)
def test_health_one_down(
    client: FlaskClient,
    upstreams: Upstreams,
    down: str,
    handler: Callable[[httpx.Request], httpx.Response],
    detail: dict[str, Any],
) -> None:
    upstreams.health[down] = handler
    resp = client.get("/health")
    assert resp.status_code == 503
    assert resp.json[down] == detail
    up = "primary" if down == "classifier" else "classifier"
    assert resp.json[up] == {"ok": True, "status": 200}


def test_health_does_not_touch_xai(client: FlaskClient, upstreams: Upstreams) -> None:
    client.get("/health")
    assert upstreams.calls(XAI) == []


def test_request_id_on_every_response(client: FlaskClient) -> None:
    ids = {
        client.get("/health").headers["X-Request-Id"],
        client.get("/v1/models").headers["X-Request-Id"],
        client.get("/v1/models", headers=AUTH).headers["X-Request-Id"],
        client.post("/v1/chat/completions", json=chat_body(), headers=AUTH).headers["X-Request-Id"],
    }
    assert len(ids) == 4
