"""Classifier headroom: a conversation the primary can serve but the classifier cannot hold is
classified on its recent history; past the primary's limit it is exactly `context_too_long`.

The fakes count a word as a token (router_fakes.fake_token_count), and the fake classifier
rejects a prompt that fills its context with vLLM's own 400 texts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from ai_router.classifier import TRIMMED
from ai_router.classify_prompt import classification_messages
from ai_router.fit import CUT_MARK, trim
from flask.testing import FlaskClient
from router_fakes import (
    AUTH,
    CLASSIFIER,
    PRIMARY,
    Upstreams,
    chat_completion,
    fake_token_count,
    session_lines,
)

# Labels count local=1, search=2 in the fakes: the classifier needs 3 tokens of room for one.
BUDGET = 3
CONTEXT = 400
ROOM = CONTEXT - BUDGET
CUE = "what is the weather in Oslo today"


def conversation(pad_words: int, cue: str = CUE) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "be terse"},
        {"role": "user", "content": "hello there"},
        {"role": "assistant", "content": " ".join(["w"] * pad_words)},
        {"role": "user", "content": cue},
    ]


def classifier_tokens(messages: list[dict[str, Any]]) -> int:
    """What the classifier holds for a conversation: its classification prompt, counted."""
    return fake_token_count(classification_messages(messages))


def sized(tokens: int) -> list[dict[str, Any]]:
    """A conversation whose classification prompt counts exactly `tokens`."""
    base = classifier_tokens(conversation(0))
    return conversation(tokens - base)


def route(client: FlaskClient, messages: list[dict[str, Any]]) -> Any:
    resp = client.post("/v1/route", json={"messages": messages}, headers=AUTH)
    assert resp.status_code == 200
    return resp.json


def sent_to_classifier(upstreams: Upstreams) -> list[list[dict[str, str]]]:
    return [b["messages"] for b in upstreams.classifier_bodies()]


@pytest.fixture
def limits(upstreams: Upstreams) -> Upstreams:
    upstreams.context = {"classifier": CONTEXT, "primary": CONTEXT}
    return upstreams


def test_the_largest_conversation_that_fits_is_classified_whole(
    client: FlaskClient, limits: Upstreams
) -> None:
    messages = sized(ROOM)
    assert route(client, messages)["reason"] == "classified"
    assert sent_to_classifier(limits) == [classification_messages(messages)]


def test_one_token_more_is_classified_on_trimmed_history(
    client: FlaskClient, limits: Upstreams
) -> None:
    # The engine would still accept this prompt, but clamp the label to fewer tokens than the
    # longest label needs: the router trims instead of risking a cut label.
    limits.label = "search"
    messages = sized(ROOM + 1)
    answer = route(client, messages)
    assert (answer["route"], answer["reason"]) == ("search", TRIMMED)
    (sent,) = sent_to_classifier(limits)
    assert sent == [*classification_messages(messages)[:1], {"role": "user", "content": CUE}]
    assert fake_token_count(sent) <= ROOM


def test_as_much_recent_history_as_fits_is_kept(client: FlaskClient, limits: Upstreams) -> None:
    turns = [
        {"role": "user", "content": " ".join(["old"] * 100)},
        {"role": "assistant", "content": " ".join(["a"] * 100)},
        {"role": "user", "content": "recent question"},
        {"role": "assistant", "content": " ".join(["b"] * 100)},
        {"role": "user", "content": CUE},
    ]
    assert classifier_tokens(turns) > ROOM
    assert route(client, turns)["reason"] == TRIMMED
    (sent,) = sent_to_classifier(limits)
    # The newest suffix that opens with a user turn and fits; the older turns are dropped.
    assert sent == classification_messages(turns[2:])
    assert fake_token_count(sent) <= ROOM


def test_the_primary_gets_the_whole_conversation(
    client: FlaskClient, limits: Upstreams, session_log_path: Path
) -> None:
    messages = sized(ROOM + 50)
    body = {"model": "ai-router", "messages": messages}
    resp = client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert resp.status_code == 200
    assert resp.headers["X-Route"] == "local"
    assert resp.headers["X-Route-Reason"] == TRIMMED
    (forwarded,) = limits.bodies(f"{PRIMARY}/v1/chat/completions")
    assert forwarded["messages"] == messages
    (line,) = session_lines(session_log_path)
    assert line["reason"] == TRIMMED
    assert line["request_id"] == resp.headers["X-Request-Id"]


def test_a_trimmed_stream_is_logged_with_its_reason(
    client: FlaskClient, limits: Upstreams, session_log_path: Path
) -> None:
    limits.primary = lambda r: httpx.Response(
        200,
        headers={"content-type": "text/event-stream"},
        content=b'data: {"choices":[{"delta":{"content":"x"}}]}\n\ndata: [DONE]\n\n',
    )
    body = {"model": "ai-router", "messages": sized(ROOM + 1), "stream": True}
    resp = client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert resp.data and resp.headers["X-Route-Reason"] == TRIMMED
    (line,) = session_lines(session_log_path)
    assert (line["reason"], line["stream"], line["status"]) == (TRIMMED, True, 200)


@pytest.mark.parametrize("default_route", ["local", "search"])
@pytest.mark.parametrize("over", [0, 1, 60])
def test_past_the_primarys_limit_is_context_too_long(
    make_client: Callable[..., FlaskClient],
    limits: Upstreams,
    default_route: str,
    over: int,
) -> None:
    """`over` 0: the prompt fills the primary's context and leaves no room for one token."""
    client = make_client(default_route=default_route)
    messages = conversation(0)
    messages[2]["content"] = " ".join(["w"] * (CONTEXT + over - fake_token_count(messages)))
    assert fake_token_count(messages) == CONTEXT + over
    answer = route(client, messages)
    assert (answer["route"], answer["reason"]) == (default_route, "fallback:context_too_long")
    assert sent_to_classifier(limits) == []


def test_past_the_primarys_limit_even_a_classifier_that_could_hold_it_is_not_asked(
    client: FlaskClient, limits: Upstreams
) -> None:
    limits.context["classifier"] = 2 * CONTEXT
    messages = conversation(0)
    messages[2]["content"] = " ".join(["w"] * (CONTEXT - fake_token_count(messages)))
    assert route(client, messages)["reason"] == "fallback:context_too_long"
    assert sent_to_classifier(limits) == []


def test_the_primarys_minimal_need_is_one_token(client: FlaskClient, limits: Upstreams) -> None:
    messages = conversation(0)
    messages[2]["content"] = " ".join(["w"] * (CONTEXT - 1 - fake_token_count(messages)))
    assert fake_token_count(messages) == CONTEXT - 1
    assert route(client, messages)["reason"] == TRIMMED


def test_a_last_message_too_long_alone_is_cut_in_the_middle(
    client: FlaskClient, limits: Upstreams
) -> None:
    limits.context["primary"] = 10 * CONTEXT
    words = ["first", *(f"w{i}" for i in range(2 * CONTEXT)), "last?"]
    messages = [{"role": "user", "content": " ".join(words)}]
    assert route(client, messages)["reason"] == TRIMMED
    (sent,) = sent_to_classifier(limits)
    text = sent[-1]["content"]
    assert text.startswith("first w0 ") and text.endswith(" last?") and CUT_MARK in text
    assert fake_token_count(sent) <= ROOM
    # As much as fits: one word more would not.
    assert fake_token_count(sent) > ROOM - 2


def test_short_conversations_are_not_counted(client: FlaskClient, upstreams: Upstreams) -> None:
    upstreams.context = {"classifier": 32768, "primary": 32768}
    for _ in range(3):
        assert route(client, conversation(20))["reason"] == "classified"
    counts = [json.loads(r.content) for r in upstreams.calls(f"{CLASSIFIER}/tokenize")]
    assert [c.get("prompt") for c in counts] == ["local", "search"]
    assert upstreams.calls(f"{PRIMARY}/tokenize") == []


def test_the_context_is_learned_from_a_count_after_the_engines_400(
    client: FlaskClient, upstreams: Upstreams
) -> None:
    """An engine whose label counts carry no max_model_len: its 400 leads to a count, and the
    count's max_model_len to trimming."""
    upstreams.context = {"classifier": CONTEXT, "primary": CONTEXT}

    def tokenize(request: httpx.Request) -> httpx.Response:
        answer = json.loads(upstreams._tokenize(request).content)
        if "prompt" in json.loads(request.content):
            answer.pop("max_model_len")
        return httpx.Response(200, json=answer)

    upstreams.tokenize = tokenize
    messages = sized(CONTEXT + 5)
    assert route(client, messages)["reason"] == TRIMMED
    first, second = sent_to_classifier(upstreams)
    assert first == classification_messages(messages)
    assert fake_token_count(second) <= ROOM


def test_without_counts_the_engines_400_is_context_too_long(
    client: FlaskClient, upstreams: Upstreams
) -> None:
    upstreams.context = {"classifier": CONTEXT, "primary": CONTEXT}
    upstreams.tokenize = lambda r: httpx.Response(500, text="tokenizer down")
    for tokens in (CONTEXT, CONTEXT + 1):
        assert route(client, sized(tokens))["reason"] == "fallback:context_too_long"


def test_an_unknown_primary_count_still_trims(client: FlaskClient, limits: Upstreams) -> None:
    limits.primary_tokenize = lambda r: httpx.Response(404, json={"error": "no tokenize"})
    assert route(client, sized(CONTEXT + 20))["reason"] == TRIMMED


def test_a_classifier_400_after_trimming_is_context_too_long(
    client: FlaskClient, limits: Upstreams
) -> None:
    limits.classify = lambda r: httpx.Response(
        400, json={"error": {"message": "This model's maximum context length is 400 tokens."}}
    )
    assert route(client, sized(ROOM + 1))["reason"] == "fallback:context_too_long"


def test_a_trimmed_answer_is_still_checked(client: FlaskClient, limits: Upstreams) -> None:
    limits.classify = lambda r: httpx.Response(200, json=chat_completion("maybe"))
    assert route(client, sized(ROOM + 1))["reason"] == "fallback:bad_label"


# trim() on its own, with a fits() that counts words.


def _fits(limit: int) -> Callable[[list[dict[str, str]]], bool]:
    return lambda conv: fake_token_count(conv) <= limit


def test_trim_keeps_the_system_message_and_opens_with_a_user_turn() -> None:
    conv = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u1"},
        {"role": "assistant", "content": "a " * 10},
        {"role": "assistant", "content": "a2"},
        {"role": "user", "content": "u2"},
        {"role": "assistant", "content": "a3"},
    ]
    # Room for the last user turn and the assistant after it, and for one more message, but
    # an assistant message may not open the trimmed part.
    out = trim(conv, _fits(fake_token_count([conv[0], *conv[3:]])))
    assert out == [conv[0], *conv[4:]]


def test_trim_returns_none_when_nothing_fits() -> None:
    conv = [{"role": "system", "content": "s " * 50}, {"role": "user", "content": "hello"}]
    assert trim(conv, _fits(10)) is None
    assert trim(conv[:1], _fits(1000)) is None
