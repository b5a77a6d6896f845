"""API contracts through the ai-router, with the official openai SDK."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

LOCAL_PROMPT = "Write a Python function that reverses a string."


def test_non_streaming_chat(router_client: openai.OpenAI) -> None:
    raw = router_client.chat.completions.with_raw_response.create(
        model="ai-router",
        messages=[{"role": "user", "content": LOCAL_PROMPT}],
        max_tokens=32,
    )
    assert raw.headers["X-Route"] in ("local", "search")
    assert raw.headers["X-Route-Reason"] == "classified"
    completion = raw.parse()
    assert completion.choices and completion.choices[0].message.role == "assistant"
    assert completion.usage is not None and completion.usage.completion_tokens > 0


def test_streaming_chat_with_usage(router_client: openai.OpenAI) -> None:
    stream = router_client.chat.completions.create(
        model="ai-router",
        messages=[{"role": "user", "content": LOCAL_PROMPT}],
        max_tokens=32,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert len(chunks) >= 2
    usage = [c.usage for c in chunks if c.usage is not None]
    assert usage and usage[-1].completion_tokens > 0
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)


def test_raw_stream_ends_with_done_and_carries_route_headers(router_http: httpx.Client) -> None:
    body = {
        "model": "ai-router",
        "messages": [{"role": "user", "content": LOCAL_PROMPT}],
        "max_tokens": 16,
        "stream": True,
    }
    with router_http.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        assert r.headers["X-Route"] == "local"
        lines = [ln for ln in r.iter_lines() if ln.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    for ln in lines[:-1]:
        assert json.loads(ln[6:])["object"] == "chat.completion.chunk"


def test_reasoning_field_when_the_primary_has_a_reasoning_parser(
    router_client: openai.OpenAI, stack: Any
) -> None:
    parser = stack.spec.primary.engine.reasoning_parser
    if not parser:
        pytest.skip("the primary engine runs without --reasoning-parser")
    raw = router_client.chat.completions.with_raw_response.create(
        model="ai-router", messages=[{"role": "user", "content": LOCAL_PROMPT}], max_tokens=64
    )
    assert raw.headers["X-Route"] == "local"
    message = raw.parse().choices[0].message
    extra = message.model_extra or {}
    reasoning = extra.get("reasoning") or extra.get("reasoning_content")
    assert reasoning, f"--reasoning-parser {parser} is set but the reply has no reasoning field"


def test_missing_and_wrong_key_get_401(stack: Any) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-key"}):
        r = httpx.post(
            stack.entry.url + "/v1/chat/completions",
            headers=headers,
            json={"model": "ai-router", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert r.status_code == 401
        assert set(r.json()["error"]) >= {"message", "type", "code"}
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=stack.entry.url + "/v1", api_key="nope", max_retries=0).models.list()


def test_malformed_body_is_a_400_in_openai_shape(router_http: httpx.Client) -> None:
    r = router_http.post(
        "/v1/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"]["message"]
    r = router_http.post("/v1/chat/completions", json={"model": "ai-router", "messages": "hi"})
    assert r.status_code == 400


def test_oversize_body_is_a_413(router_http: httpx.Client) -> None:
    big = "x" * (5 * 1024 * 1024)
    r = router_http.post(
        "/v1/chat/completions",
        json={"model": "ai-router", "messages": [{"role": "user", "content": big}]},
    )
    assert r.status_code == 413
    assert r.json()["error"]["message"]


def test_models_lists_the_router_model(router_client: openai.OpenAI) -> None:
    ids = [m.id for m in router_client.models.list().data]
    assert "ai-router" in ids
