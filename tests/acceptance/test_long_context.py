"""Long-context classification at max-model-len: no 5xx, no silent fallback, no truncation.

Conversations are built to an exact token count with the classifier engine's own /tokenize, on
exactly the messages the router sends it. After each request, the classifier engine's own
prompt-token counter says how much of the conversation it really saw: a router that truncates the
conversation, or one that claims `classified` without asking, is caught by that number.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from ai_router.classify_prompt import ROUTES, classification_messages

from harness.longctx import PLACEMENTS, Tokenizer, build, label_budget
from harness.routing.corpus import FILLER_TEXT, ROUTING_EVAL, load_filler, load_routing
from harness.telemetry.prom import scrape

PROMPT_TOKENS = "vllm:prompt_tokens_total"


@pytest.fixture(scope="module")
def engine_http() -> Any:
    with httpx.Client(timeout=httpx.Timeout(600.0, connect=10.0)) as client:
        yield client


@pytest.fixture(scope="module")
def tok(stack: Any, engine_http: httpx.Client) -> Tokenizer:
    return Tokenizer(engine_http, stack.classifier.url, stack.classifier.model_name)


@pytest.fixture(scope="module")
def cues() -> dict[str, str]:
    items = [it for it in load_routing(ROUTING_EVAL) if len(it.messages) == 1]
    return {route: next(it.question for it in items if it.route == route) for route in ROUTES}


@pytest.fixture(scope="module")
def filler() -> str:
    return " ".join(load_filler(FILLER_TEXT))


@pytest.fixture(scope="module")
def matrix(run_record: Any) -> Any:
    rows: list[dict[str, Any]] = []
    yield rows
    run_record.put("acceptance", "long_context", rows)


def max_model_len(stack: Any) -> int:
    return int(stack.spec.classifier.engine.max_model_len)


def classify(http: httpx.Client, messages: list[dict[str, str]]) -> httpx.Response:
    return http.post("/v1/route", json={"model": "ai-router", "messages": messages})


def lengths(stack: Any, budget: int) -> list[int]:
    mml = max_model_len(stack)
    return [mml - budget, mml // 2, 4096]


@pytest.mark.slow
@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("route", ROUTES)
def test_classification_up_to_max_model_len(
    stack: Any,
    router_http: httpx.Client,
    engine_http: httpx.Client,
    tok: Tokenizer,
    cues: dict[str, str],
    filler: str,
    matrix: list[dict[str, Any]],
    placement: str,
    route: str,
    harness_settings: Any,
) -> None:
    budget = label_budget(tok, ROUTES)
    # What the router decides for the cue alone: context length must not change it. Whether
    # that short-context route is right is the routing-accuracy test's question.
    short = classify(router_http, [{"role": "user", "content": cues[route]}])
    expected = short.headers.get("X-Route", route)
    problems: list[str] = []
    misroutes: list[str] = []  # the route changed with history length; see the setting below
    if expected != route:
        print(f"note: the cue {cues[route]!r} routes {expected} even without history")
    for target in lengths(stack, budget):
        conv = build(
            tok.count_messages,
            classification_messages,
            placement=placement,
            cue=cues[route],
            target_tokens=target,
            filler=filler,
        )
        before = scrape(stack.classifier.url, engine_http).value(PROMPT_TOKENS)
        r = classify(router_http, conv.messages)
        seen = scrape(stack.classifier.url, engine_http).value(PROMPT_TOKENS) - before
        reason = r.headers.get("X-Route-Reason", "<missing>")
        got = r.headers.get("X-Route", "<missing>")
        matrix.append(
            {
                "placement": placement,
                "route": route,
                "tokens": conv.tokens,
                "status": r.status_code,
                "got": got,
                "reason": reason,
                "classifier_prompt_tokens": int(seen),
            }
        )
        where = f"{placement} cue, {conv.tokens:,} tokens"
        if r.status_code >= 500:
            problems.append(f"{where}: HTTP {r.status_code}")
            continue
        if reason != "classified":
            problems.append(f"{where}: the router fell back ({reason}) below max-model-len")
            continue
        if seen < conv.tokens:
            problems.append(
                f"{where}: the router says classified but the classifier saw only "
                f"{int(seen):,} prompt tokens: the conversation was truncated or never sent"
            )
        if placement == "last" and got != expected:
            misroutes.append(f"{where}: routed {got}, but {expected} without the history")
    assert not problems, "; ".join(problems + misroutes)
    for line in misroutes:
        print(f"misroute: {line}")
    if misroutes and harness_settings.get(
        f"targets.{stack.target}.long_context_route_check", bool, True
    ):
        pytest.fail("; ".join(misroutes))


@pytest.mark.parametrize("over", [0, 1])
def test_just_over_the_limit_is_flagged_never_classified(
    stack: Any,
    router_http: httpx.Client,
    tok: Tokenizer,
    cues: dict[str, str],
    filler: str,
    matrix: list[dict[str, Any]],
    over: int,
) -> None:
    """At max-model-len (no room for the label) and one token past it."""
    target = max_model_len(stack) + over
    conv = build(
        tok.count_messages,
        classification_messages,
        placement="last",
        cue=cues["search"],
        target_tokens=target,
        filler=filler,
    )
    assert conv.tokens > max_model_len(stack) - 1
    r = classify(router_http, conv.messages)
    reason = r.headers.get("X-Route-Reason", "<missing>")
    matrix.append(
        {
            "placement": "last",
            "route": "search",
            "tokens": conv.tokens,
            "status": r.status_code,
            "got": r.headers.get("X-Route"),
            "reason": reason,
        }
    )
    assert r.status_code < 500, r.text[:300]
    if 400 <= r.status_code < 500:
        assert r.json()["error"]["message"], "a 4xx must say why"
        return
    assert reason.startswith("fallback:"), (
        f"{conv.tokens:,} tokens cannot be classified within max-model-len "
        f"{max_model_len(stack):,}, yet the router answered with X-Route-Reason: {reason}"
    )
