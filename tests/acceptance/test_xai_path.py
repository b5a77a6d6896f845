"""The search route: what the router sends to xAI and how it translates the answer back.

On the twin the fake xAI records every request; against a real stack these tests skip, and the
`xai`-marked variant (opt-in, costs money) sends one real search request.
"""

from __future__ import annotations

import json
import os
from typing import Any

import httpx
import openai
import pytest

SEARCH = [{"role": "user", "content": "What is the weather in Lisbon today?"}]


@pytest.fixture
def xai(stack: Any) -> Any:
    if "fake-xai" not in stack.services:
        pytest.skip(f"the {stack.target} stack has no fake xAI to inspect")
    url = stack.services["fake-xai"].url
    httpx.delete(url + "/_requests", timeout=5)
    return url


def recorded(url: str) -> list[dict[str, Any]]:
    return httpx.get(url + "/_requests", timeout=5).json()


def router_setting(stack: Any, name: str, default: str) -> str:
    return stack.spec.services[stack.router.name].environment.get(name, default)


def test_tools_and_output_budget_sent_to_xai(
    router_client: openai.OpenAI, stack: Any, xai: str, run_record: Any
) -> None:
    raw = router_client.chat.completions.with_raw_response.create(
        model="ai-router", messages=SEARCH, max_tokens=5
    )
    assert raw.headers["X-Route"] == "search", "the search prompt was not routed to search"
    reqs = recorded(xai)
    assert len(reqs) == 1
    body = reqs[0]["body"]
    tools = [t["type"] for t in body["tools"]]
    expected = router_setting(stack, "XAI_SEARCH_TOOLS", "web_search,x_search").split(",")
    floor = int(router_setting(stack, "XAI_MIN_MAX_TOKENS", "4096"))
    run_record.put(
        "acceptance",
        "xai_request",
        {"tools": tools, "max_output_tokens": body["max_output_tokens"]},
    )
    assert tools == expected
    assert body["max_output_tokens"] >= floor, "the client's max_tokens=5 was not raised"
    assert reqs[0]["authorization_present"] is True
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    details = completion.usage.completion_tokens_details
    assert details is not None and (details.reasoning_tokens or 0) > 0


def test_streamed_search_is_translated_to_chat_chunks(router_http: httpx.Client, xai: str) -> None:
    body = {
        "model": "ai-router",
        "messages": SEARCH,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with router_http.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200 and r.headers["X-Route"] == "search"
        lines = [ln[6:] for ln in r.iter_lines() if ln.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(ln) for ln in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text.strip()
    assert chunks[-1]["usage"]["completion_tokens"] > 0
    assert recorded(xai)[0]["body"]["stream"] is True


@pytest.mark.xai
def test_real_xai_answers_a_search(stack: Any) -> None:
    key = os.environ.get("XAI_API_KEY")
    if not key:
        pytest.skip("XAI_API_KEY is not set")
    client = openai.OpenAI(base_url="https://api.x.ai/v1", api_key=key, max_retries=0)
    response = client.responses.create(
        model=router_setting(stack, "XAI_MODEL", "grok-4-fast"),
        input="What is today's date? One line.",
        tools=[{"type": "web_search"}],  # type: ignore[list-item]
        max_output_tokens=int(router_setting(stack, "XAI_MIN_MAX_TOKENS", "4096")),
    )
    assert response.output_text.strip()
