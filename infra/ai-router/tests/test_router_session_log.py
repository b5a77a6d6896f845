"""The session log: one valid JSON line per request, with routing facts and no secrets/text."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from ai_router.config import ConfigError
from ai_router.session_log import SessionLog, SessionRecord
from flask.testing import FlaskClient
from router_fakes import (
    AUTH,
    OTHER_KEY,
    PROMPT,
    ROUTER_KEY,
    XAI_KEY,
    Upstreams,
    chat_body,
    session_lines,
    xai_stream,
)

FIELDS = {
    "ts",
    "request_id",
    "method",
    "path",
    "route",
    "reason",
    "classifier_ms",
    "status",
    "stream",
    "prompt_tokens",
    "completion_tokens",
    "upstream_retry",
    "error",
    "duration_ms",
    "conversation",
    "turn",
    "messages",
    "history_chars",
    "history_tokens",
    "upstream_connect_ms",
    "upstream_ttfb_ms",
}
SHAPE = ("conversation", "turn", "messages", "history_chars", "history_tokens")


def test_one_line_per_request(
    client: FlaskClient, upstreams: Upstreams, session_log_path: Path
) -> None:
    r1 = client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
    upstreams.label = "search"
    r2 = client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
    r3 = client.post("/v1/route", json=chat_body(), headers=AUTH)
    r4 = client.get("/v1/models")
    lines = session_lines(session_log_path)
    assert len(lines) == 4
    for line, resp in zip(lines, (r1, r2, r3, r4), strict=True):
        assert set(line) == FIELDS
        assert line["request_id"] == resp.headers["X-Request-Id"]
        assert line["status"] == resp.status_code
        assert datetime.fromisoformat(line["ts"]).utcoffset().total_seconds() == 0
        assert isinstance(line["duration_ms"], int)
    unset = {"ts": None, "request_id": None, "classifier_ms": 0, "duration_ms": 0}
    unset |= {"upstream_connect_ms": 0.0, "upstream_ttfb_ms": 0.0}
    assert len(lines[0]["conversation"]) == 16
    assert lines[0] | unset | {"conversation": None} == {
        "ts": None,
        "request_id": None,
        "method": "POST",
        "path": "/v1/chat/completions",
        "route": "local",
        "reason": "classified",
        "classifier_ms": 0,
        "status": 200,
        "stream": False,
        "prompt_tokens": 11,
        "completion_tokens": 7,
        "upstream_retry": None,
        "error": None,
        "duration_ms": 0,
        "conversation": None,
        "turn": 1,
        "messages": 1,
        "history_chars": len(PROMPT),
        "history_tokens": None,
        "upstream_connect_ms": 0.0,
        "upstream_ttfb_ms": 0.0,
    }
    # /v1/route and the rest carry no conversation shape: only chats are conversations.
    assert all(lines[i][k] is None for i in (2, 3) for k in SHAPE)
    assert (lines[1]["route"], lines[1]["prompt_tokens"], lines[1]["completion_tokens"]) == (
        "search",
        21,
        9,
    )
    assert lines[2]["path"] == "/v1/route" and lines[2]["prompt_tokens"] is None
    assert lines[3]["status"] == 401 and lines[3]["error"] == "invalid_api_key"


def test_stream_usage_is_logged(
    client: FlaskClient, upstreams: Upstreams, session_log_path: Path
) -> None:
    upstreams.primary = lambda r: httpx.Response(
        200,
        headers={"content-type": "text/event-stream"},
        content=iter(
            [
                b'data: {"choices":[{"delta":{"content":"x"}}]}\n\ndata: {"choices":[],"us',
                b'age":{"prompt_tokens":3,"completion_tokens":2}}\n\ndata: [DONE]\n\n',
            ]
        ),
    )
    body = chat_body(stream=True, stream_options={"include_usage": True})
    # Reading .data drives the stream to its end; the line is written when it finishes.
    assert client.post("/v1/chat/completions", json=body, headers=AUTH).data
    upstreams.label = "search"
    upstreams.xai = lambda r: httpx.Response(200, content=iter(xai_stream(["y"])))
    assert client.post("/v1/chat/completions", json=body, headers=AUTH).data
    local, search = session_lines(session_log_path)
    assert (local["stream"], local["prompt_tokens"], local["completion_tokens"]) == (True, 3, 2)
    assert (search["stream"], search["prompt_tokens"], search["completion_tokens"]) == (
        True,
        21,
        9,
    )
    assert local["status"] == search["status"] == 200


def test_failures_are_logged_with_reason_and_error(
    client: FlaskClient, upstreams: Upstreams, session_log_path: Path
) -> None:
    upstreams.classify = lambda r: (_ for _ in ()).throw(httpx.ConnectError("x", request=r))
    upstreams.primary = lambda r: httpx.Response(500, text="dead")
    client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
    (line,) = session_lines(session_log_path)
    assert line["reason"] == "fallback:unreachable"
    assert line["status"] == 502
    assert line["error"] == "bad_gateway"


def test_retry_is_logged(client: FlaskClient, upstreams: Upstreams, session_log_path: Path) -> None:
    from router_fakes import xai_response

    upstreams.label = "search"
    upstreams.xai = lambda r: httpx.Response(200, json=xai_response(None, "incomplete", "x"))
    client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
    (line,) = session_lines(session_log_path)
    assert line["upstream_retry"] == "empty_output"
    assert line["status"] == 502


def test_no_secrets_or_message_text(
    client: FlaskClient, upstreams: Upstreams, session_log_path: Path
) -> None:
    client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
    upstreams.label = "search"
    client.post("/v1/chat/completions", json=chat_body(stream=True), headers=AUTH)
    client.post("/v1/chat/completions", json=chat_body(), headers={"Authorization": "Bearer nope"})
    client.post("/v1/route", json=chat_body(), headers=AUTH)
    text = session_log_path.read_text()
    for secret in (ROUTER_KEY, OTHER_KEY, XAI_KEY, "nope", PROMPT, "Fresh news", "Paris"):
        assert secret not in text
    assert len(text.splitlines()) == 4


def test_default_is_stderr(
    make_client: Callable[..., FlaskClient], capsys: pytest.CaptureFixture[str]
) -> None:
    client = make_client(session_log=None)
    resp = client.get("/v1/models", headers=AUTH)
    err = capsys.readouterr().err
    (line,) = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    assert line["request_id"] == resp.headers["X-Request-Id"]


def test_concurrent_writes_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "concurrent.jsonl"
    log = SessionLog(str(path))

    def work(n: int) -> None:
        for i in range(200):
            log.write(SessionRecord(f"{n}-{i}-" + "x" * 500, "POST", "/p", 0.0))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 1600
    assert len({json.loads(line)["request_id"] for line in lines}) == 1600


def test_unwritable_path_is_a_config_error(
    make_client: Callable[..., FlaskClient], tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="ROUTER_SESSION_LOG"):
        make_client(session_log=str(tmp_path / "missing-dir" / "s.jsonl"))


MARKER = "zq-marker-5d81c0"


def conversation(turns: int, first: str = "Tell me about tides.") -> list[dict[str, str]]:
    """A system message, then `turns` user turns with an assistant reply between them."""
    msgs = [{"role": "system", "content": "Answer briefly."}]
    for i in range(turns):
        if i:
            msgs.append({"role": "assistant", "content": f"Reply {i}."})
        msgs.append({"role": "user", "content": first if i == 0 else f"And then {i}?"})
    return msgs


def test_turns_of_one_conversation_share_its_key(
    client: FlaskClient, session_log_path: Path
) -> None:
    for n in (1, 2, 3):
        client.post("/v1/chat/completions", json={"messages": conversation(n)}, headers=AUTH)
    other = conversation(2, first="Something else entirely.")
    client.post("/v1/chat/completions", json={"messages": other}, headers=AUTH)
    lines = session_lines(session_log_path)
    assert [line["turn"] for line in lines] == [1, 2, 3, 2]
    assert [line["messages"] for line in lines] == [2, 4, 6, 4]
    assert len({line["conversation"] for line in lines[:3]}) == 1
    assert lines[3]["conversation"] != lines[0]["conversation"]
    sizes = [sum(len(m["content"]) for m in conversation(n)) for n in (1, 2, 3)]
    assert [line["history_chars"] for line in lines[:3]] == sizes


def test_the_key_depends_on_the_salt(make_client: Callable[..., FlaskClient]) -> None:
    """Two processes without a configured salt, or with different salts, give one conversation
    different keys; the same configured salt gives the same key (a log that spans restarts)."""
    from ai_router.session_log import conversation_shape, session_salt

    msgs = conversation(2)
    random_a = conversation_shape(msgs, session_salt("")).key
    random_b = conversation_shape(msgs, session_salt("")).key
    assert random_a != random_b
    assert conversation_shape(msgs, session_salt("s1")).key == (
        conversation_shape(msgs, session_salt("s1")).key
    )
    assert conversation_shape(msgs, session_salt("s1")).key != (
        conversation_shape(msgs, session_salt("s2")).key
    )


def test_a_counted_conversation_logs_the_primarys_token_count(
    make_client: Callable[..., FlaskClient], upstreams: Upstreams, session_log_path: Path
) -> None:
    from router_fakes import fake_token_count

    # While the classifier's context is unknown nothing is counted: the size is known in
    # characters only.
    make_client().post("/v1/chat/completions", json=chat_body(), headers=AUTH)
    upstreams.context = {"classifier": 400, "primary": 400}
    long = [{"role": "user", "content": " ".join(["w"] * 150)}]
    make_client().post("/v1/chat/completions", json={"messages": long}, headers=AUTH)
    short, counted = session_lines(session_log_path)
    assert short["history_tokens"] is None and short["history_chars"] == len(PROMPT)
    assert counted["history_tokens"] == fake_token_count(long)
    assert counted["history_chars"] == len(long[0]["content"])


def test_a_planted_marker_never_reaches_the_log(
    client: FlaskClient, upstreams: Upstreams, session_log_path: Path
) -> None:
    """The marker in every place a conversation holds text: system, first and later user
    turns, an assistant reply, content parts; streamed and not, both routes, and trimmed."""
    msgs = [
        {"role": "system", "content": f"You are {MARKER}."},
        {"role": "user", "content": f"My name is {MARKER}."},
        {"role": "assistant", "content": f"Hello {MARKER}."},
        {"role": "user", "content": [{"type": "text", "text": f"Spell {MARKER}."}]},
    ]
    client.post("/v1/chat/completions", json={"messages": msgs}, headers=AUTH)
    upstreams.label = "search"
    client.post("/v1/chat/completions", json={"messages": msgs, "stream": True}, headers=AUTH)
    upstreams.context = {"classifier": 120, "primary": 400}
    long = [*msgs[:3], {"role": "assistant", "content": " ".join([MARKER] * 80)}, msgs[3]]
    client.post("/v1/chat/completions", json={"messages": long}, headers=AUTH)
    text = session_log_path.read_text()
    lines = session_lines(session_log_path)
    assert len(lines) == 3 and lines[2]["reason"] == "classified:trimmed-history"
    assert MARKER not in text and "marker" not in text
