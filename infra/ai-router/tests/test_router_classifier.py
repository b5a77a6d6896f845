"""The routing decision: the classifier request, label length, and every fallback cause."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from ai_router.classifier import FALLBACK_MAX_TOKENS, Classifier
from ai_router.classify_prompt import ROUTES, classification_messages
from flask.testing import FlaskClient
from router_fakes import AUTH, CLASSIFIER, PRIMARY, XAI, Upstreams, chat_body, chat_completion

CHAT_URL = f"{CLASSIFIER}/v1/chat/completions"


def test_local_route(client: FlaskClient, upstreams: Upstreams) -> None:
    resp = client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
    assert resp.status_code == 200
    assert resp.headers["X-Route"] == "local"
    assert resp.headers["X-Route-Reason"] == "classified"
    assert int(resp.headers["X-Classifier-Ms"]) >= 0
    assert len(upstreams.calls(f"{PRIMARY}/v1/chat/completions")) == 1
    assert upstreams.calls(XAI) == []


def test_search_route(client: FlaskClient, upstreams: Upstreams) -> None:
    upstreams.label = "search"
    resp = client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
    assert resp.status_code == 200
    assert resp.headers["X-Route"] == "search"
    assert resp.headers["X-Route-Reason"] == "classified"
    assert len(upstreams.calls(XAI)) == 1
    assert upstreams.calls(f"{PRIMARY}/v1/chat/completions") == []


def test_classifier_request_shape(client: FlaskClient, upstreams: Upstreams) -> None:
    body = chat_body()
    body["messages"] = [
        {"role": "system", "content": "be terse"},
        {"role": "user", "content": [{"type": "text", "text": "hello"}]},
        {"role": "assistant", "content": "hi"},
        {"role": "user", "content": "news today?"},
    ]
    client.post("/v1/chat/completions", json=body, headers=AUTH)
    (sent,) = upstreams.bodies(CHAT_URL)
    assert sent == {
        "model": "classifier-model",
        "messages": classification_messages(body["messages"]),
        # token counts are local=1, search=2 in the fakes: longest + 1
        "max_tokens": 3,
        "temperature": 0,
        "structured_outputs": {"choice": list(ROUTES)},
    }


def test_label_length_is_learned_once(client: FlaskClient, upstreams: Upstreams) -> None:
    for _ in range(3):
        client.post("/v1/route", json=chat_body(), headers=AUTH)
    tokenize = upstreams.calls(f"{CLASSIFIER}/tokenize")
    assert [json.loads(r.content) for r in tokenize] == [
        {"model": "classifier-model", "prompt": label} for label in ROUTES
    ]
    assert [b["max_tokens"] for b in upstreams.bodies(CHAT_URL)] == [3, 3, 3]


def test_tokenize_failure_uses_default_and_retries(
    client: FlaskClient, upstreams: Upstreams
) -> None:
    upstreams.tokenize = lambda r: httpx.Response(404, json={"error": "no tokenize"})
    client.post("/v1/route", json=chat_body(), headers=AUTH)
    upstreams.tokenize = lambda r: httpx.Response(200, json={"count": 5})
    client.post("/v1/route", json=chat_body(), headers=AUTH)
    client.post("/v1/route", json=chat_body(), headers=AUTH)
    assert [b["max_tokens"] for b in upstreams.bodies(CHAT_URL)] == [FALLBACK_MAX_TOKENS, 6, 6]
    # one failed lookup, then one successful lookup per label, then cached
    assert len(upstreams.calls(f"{CLASSIFIER}/tokenize")) == 1 + len(ROUTES)


def test_tokenize_is_thread_safe(make_config: Callable[..., Any]) -> None:
    calls: list[str] = []
    gate = threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        gate.wait(1)
        return httpx.Response(200, json={"count": 2})

    classifier = Classifier(make_config(), httpx.Client(transport=httpx.MockTransport(handler)))
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(classifier.max_tokens())) for _ in range(8)
    ]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join()
    assert results == [3] * 8
    assert len(calls) == len(ROUTES)


def _status(status: int, message: str) -> Callable[[httpx.Request], httpx.Response]:
    body = {"error": {"message": message, "type": "BadRequestError", "code": status}}
    return lambda r: httpx.Response(status, json=body)


def _raise(exc: type[Exception]) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc("boom", request=request)  # type: ignore[call-arg]

    return handler


FALLBACKS: list[tuple[str, Callable[[httpx.Request], httpx.Response]]] = [
    (
        "context_too_long",
        _status(400, "This model's maximum context length is 2048 tokens. However, you ..."),
    ),
    (
        "context_too_long",
        _status(400, "The decoder prompt (length 9000) is longer than the maximum model length"),
    ),
    # vLLM 0.32's answer at exactly max-model-len: max_tokens clamped to 0, then rejected.
    (
        "context_too_long",
        _status(400, "max_tokens must be at least 1, got 0. (parameter=max_tokens, value=0)"),
    ),
    (
        "context_too_long",
        _status(
            400,
            "The decoder prompt (length 32768) plus the number of requested output tokens (at "
            "least 1) is longer than the maximum model length of 32768. Make sure that "
            "`max_model_len` is no smaller than the number of text tokens (prompt + requested "
            "output tokens).",
        ),
    ),
    ("classifier_4xx", _status(400, "bad structured_outputs")),
    ("classifier_4xx", _status(404, "The model `x` does not exist.")),
    ("classifier_5xx", _status(500, "engine dead")),
    ("classifier_5xx", _status(503, "overloaded")),
    ("timeout", _raise(httpx.ReadTimeout)),
    ("timeout", _raise(httpx.ConnectTimeout)),
    ("unreachable", _raise(httpx.ConnectError)),
    ("unreachable", _raise(httpx.RemoteProtocolError)),
    ("bad_label", lambda r: httpx.Response(200, json=chat_completion("maybe"))),
    ("bad_label", lambda r: httpx.Response(200, json=chat_completion("Local"))),
    ("bad_label", lambda r: httpx.Response(200, json=chat_completion(None))),
    ("bad_label", lambda r: httpx.Response(200, json={"choices": []})),
    ("bad_label", lambda r: httpx.Response(200, text="not json")),
]


@pytest.mark.parametrize(("cause", "handler"), FALLBACKS)
@pytest.mark.parametrize("default_route", ROUTES)
def test_fallback_causes(
    make_client: Callable[..., FlaskClient],
    upstreams: Upstreams,
    cause: str,
    handler: Callable[[httpx.Request], httpx.Response],
    default_route: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_client(default_route=default_route)
    upstreams.classify = handler
    resp = client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
    assert resp.status_code == 200
    assert resp.headers["X-Route"] == default_route
    assert resp.headers["X-Route-Reason"] == f"fallback:{cause}"
    assert int(resp.headers["X-Classifier-Ms"]) >= 0
    served = XAI if default_route == "search" else f"{PRIMARY}/v1/chat/completions"
    assert len(upstreams.calls(served)) == 1
    assert f"fallback:{cause}" in caplog.text  # never silent


def test_label_whitespace_is_stripped(client: FlaskClient, upstreams: Upstreams) -> None:
    upstreams.classify = lambda r: httpx.Response(200, json=chat_completion(" search\n"))
    resp = client.post("/v1/route", json=chat_body(), headers=AUTH)
    assert resp.json["route"] == "search"
    assert resp.json["reason"] == "classified"


@pytest.mark.parametrize("broken", [httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectError])
def test_a_connection_that_breaks_once_is_asked_again(
    client: FlaskClient, upstreams: Upstreams, broken: type[Exception]
) -> None:
    """A pooled keep-alive connection the engine closed as it was reused, or an engine that
    restarted behind its address: the classification is asked once more, never a fallback."""
    tries: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        tries.append(1)
        if len(tries) == 1:
            raise broken("Server disconnected without sending a response", request=request)  # type: ignore[call-arg]
        return httpx.Response(200, json=chat_completion("search"))

    upstreams.classify = handler
    resp = client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
    assert resp.headers["X-Route-Reason"] == "classified" and resp.headers["X-Route"] == "search"
    assert len(tries) == 2


def test_a_timeout_is_never_asked_again(client: FlaskClient, upstreams: Upstreams) -> None:
    tries: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        tries.append(1)
        raise httpx.ReadTimeout("slow", request=request)

    upstreams.classify = handler
    resp = client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
    assert resp.headers["X-Route-Reason"] == "fallback:timeout" and len(tries) == 1
