"""Generated bodies against the router's OpenAI chat schema: a client mistake is never a 5xx.

Two populations: bodies valid under OpenAI's chat request schema, which must be answered,
and arbitrary JSON in every field, which must be answered or refused
with a 4xx in OpenAI's error shape. Either way the session log stays valid JSON lines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from router_fakes import AUTH

text = st.text(max_size=200)
# A text part or a bare string, as OpenAI's content arrays allow.
part = st.fixed_dictionaries({"type": st.just("text"), "text": text}) | text
content = text | st.lists(part, max_size=3) | st.none()


def message(roles: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"role": st.sampled_from(roles), "content": content},
        optional={"name": st.text(min_size=1, max_size=20)},
    )


# The part of OpenAI's CreateChatCompletionRequest the router reads or passes through; the last
# turn is the user's, as the router routes the last user message.
valid_requests = st.fixed_dictionaries(
    {
        "messages": st.tuples(
            st.lists(message(["system", "developer", "user", "assistant"]), max_size=3),
            message(["user"]),
        ).map(lambda t: [*t[0], t[1]]),
    },
    optional={
        "model": st.text(max_size=40),
        "stream": st.booleans(),
        "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans()}),
        "max_tokens": st.integers(1, 4096),
        "temperature": st.floats(0, 2),
    },
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = ["model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens"]
anything = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=4) | json_values

FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def send(client: FlaskClient, body: Any) -> tuple[int, bytes]:
    r = client.post("/v1/chat/completions", data=json.dumps(body), headers=AUTH)
    return r.status_code, r.get_data()


def assert_log_is_json_lines(path: Path) -> None:
    if not path.exists():
        return
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        assert isinstance(json.loads(line), dict), f"{path}:{n} is not a JSON object"


@FUZZ
@given(body=valid_requests)
def test_schema_valid_bodies_are_answered(
    client: FlaskClient, session_log_path: Path, body: dict[str, Any]
):
    status, data = send(client, body)
    assert status == 200, data[:300]
    assert_log_is_json_lines(session_log_path)


@FUZZ
@given(body=anything)
def test_arbitrary_bodies_get_a_4xx_in_openai_shape_never_a_5xx(
    client: FlaskClient, session_log_path: Path, body: Any
):
    status, data = send(client, body)
    assert status < 500, data[:300]
    if status >= 400:
        error = json.loads(data)["error"]
        assert error["message"] and error["type"], error
    assert_log_is_json_lines(session_log_path)


@FUZZ
@given(raw=st.binary(max_size=200))
def test_raw_bytes_never_make_a_5xx(client: FlaskClient, session_log_path: Path, raw: bytes):
    for path in ("/v1/chat/completions", "/v1/route"):
        r = client.post(path, data=raw, headers={**AUTH, "Content-Type": "application/json"})
        assert r.status_code < 500, (path, r.get_data()[:300])
    assert_log_is_json_lines(session_log_path)


@pytest.mark.parametrize("key", ["", "Bearer", "Bearer wrong", "Basic abc", "bearer \x00"])
def test_every_route_but_health_refuses_a_bad_key(client: FlaskClient, key: str):
    headers = {"Authorization": key} if key else {}
    for method, path in [("post", "/v1/chat/completions"), ("post", "/v1/route"),
                         ("get", "/v1/models")]:  # fmt: skip
        r = getattr(client, method)(path, json={"messages": []}, headers=headers)
        assert r.status_code == 401, (path, key)
        assert r.get_json()["error"]["type"], r.get_json()
    assert client.get("/health").status_code in (200, 503)
