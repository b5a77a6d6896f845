"""Long-context classification at max-model-len: no 5xx, no silent fallback, no truncation.

Conversations are built to an exact token count with the classifier engine's own /tokenize, on
exactly the messages the router sends it. After each request, the classifier engine's own
prompt-token counter says how much of the conversation it really saw: a router that truncates the
conversation, or one that claims `classified` without asking, is caught by that number.

The classifier holds its own prompt and the label besides the conversation, so between the
largest conversation it holds whole and the largest the primary serves lies a band that the
router classifies on trimmed history (`classified:trimmed-history`). Past the primary's limit
the only answer is `fallback:context_too_long`.
"""

from __future__ import annotations

import contextlib
from typing import Any

import httpx
import pytest
from ai_router.classify_prompt import ROUTES, classification_messages

from harness.routing.corpus import FILLER_TEXT, ROUTING_EVAL, load_filler, load_routing
from harness.routing.longctx import PLACEMENTS, Tokenizer, as_sent, build, build_exact, label_budget
from harness.telemetry.prom import scrape

PROMPT_TOKENS = "vllm:prompt_tokens_total"
CLASSIFIED = "classified"
TRIMMED = "classified:trimmed-history"
TOO_LONG = "fallback:context_too_long"


@pytest.fixture(scope="module")
def engine_http() -> Any:
    with httpx.Client(timeout=httpx.Timeout(600.0, connect=10.0)) as client:
        yield client


@pytest.fixture(scope="module")
def tok(stack: Any, engine_http: httpx.Client) -> Tokenizer:
    return Tokenizer(engine_http, stack.classifier.url, stack.classifier.model_name)


@pytest.fixture(scope="module")
def primary_tok(stack: Any, engine_http: httpx.Client) -> Tokenizer:
    return Tokenizer(engine_http, stack.primary.url, stack.primary.model_name)


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


@pytest.fixture(scope="module")
def band_rows(run_record: Any) -> Any:
    # Kept apart from the matrix: its rows below max-model-len are trimmed on purpose, which the
    # matrix's outcomes would count as fallbacks.
    rows: list[dict[str, Any]] = []
    yield rows
    run_record.put("acceptance", "long_context_band", rows)


def max_model_len(stack: Any) -> int:
    return int(stack.spec.classifier.engine.max_model_len)


def primary_max_model_len(stack: Any) -> int:
    return int(stack.spec.primary.engine.max_model_len)


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
    assert short.status_code == 200, f"the cue alone: HTTP {short.status_code} {short.text[:200]}"
    assert "X-Route" in short.headers, "the cue alone: the router sent no X-Route header"
    expected = short.headers["X-Route"]
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
        # The padding reaches its target to within a few tokens: a matrix of short
        # conversations would prove nothing about max-model-len.
        assert conv.tokens >= target - 8, f"built {conv.tokens:,} tokens for {target:,}"
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
        if reason != CLASSIFIED:
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
    if misroutes and harness_settings.typed.target(stack.target).long_context_route_check:
        pytest.fail("; ".join(misroutes))


def test_the_classifier_headroom_band(
    stack: Any,
    router_http: httpx.Client,
    engine_http: httpx.Client,
    tok: Tokenizer,
    primary_tok: Tokenizer,
    cues: dict[str, str],
    filler: str,
    band_rows: list[dict[str, Any]],
    harness_settings: Any,
) -> None:
    """The edges of the band between the classifier's room and the primary's limit.

    - the largest conversation the classifier holds whole (its prompt at max-model-len less the
      label budget): classified as it is;
    - one token more: the label would not fit, so it is classified on trimmed history;
    - the largest conversation the primary serves (max-model-len less its one output token, on
      the primary's own count): still classified, never a fallback.
    The first one is the matrix's cue-last search conversation, so its prefill is cached there.
    """
    budget = label_budget(tok, ROUTES)
    room = max_model_len(stack) - budget
    cue = cues["search"]
    short = classify(router_http, [{"role": "user", "content": cue}])
    expected = short.headers.get("X-Route", "<missing>")
    served = primary_max_model_len(stack) - 1
    cases = [
        ("largest untrimmed", tok.count_messages, classification_messages, room),
        ("one token over it", tok.count_messages, classification_messages, room + 1),
        ("primary's last token", primary_tok.count_messages, as_sent, served),
    ]
    problems: list[str] = []
    misroutes: list[str] = []  # the route changed with history length: gated like the matrix
    for name, count, wrap, target in cases:
        conv = build_exact(
            count, wrap, placement="last", cue=cue, target_tokens=target, filler=filler
        )
        # What the classifier would hold: whole up to its room, trimmed past it, on any target
        # (the primary's tokenizer and template may count differently from the classifier's).
        held = tok.count_messages(classification_messages(conv.messages))
        want = CLASSIFIED if held <= room else TRIMMED
        before = scrape(stack.classifier.url, engine_http).value(PROMPT_TOKENS)
        r = classify(router_http, conv.messages)
        seen = int(scrape(stack.classifier.url, engine_http).value(PROMPT_TOKENS) - before)
        reason = r.headers.get("X-Route-Reason", "<missing>")
        got = r.headers.get("X-Route", "<missing>")
        band_rows.append(
            {
                "case": name,
                "tokens": conv.tokens,
                "classifier_tokens": held,
                "room": room,
                "status": r.status_code,
                "got": got,
                "reason": reason,
                "classifier_prompt_tokens": seen,
            }
        )
        where = f"{name} ({held:,} classifier tokens, room {room:,})"
        if r.status_code != 200:
            problems.append(f"{where}: HTTP {r.status_code} {r.text[:200]}")
            continue
        if reason != want:
            problems.append(f"{where}: X-Route-Reason {reason}, expected {want}")
            continue
        if want == CLASSIFIED and seen < held:
            problems.append(f"{where}: classified, but the classifier saw only {seen:,} tokens")
        if want == TRIMMED and not 0 < seen <= room:
            problems.append(
                f"{where}: trimmed, but the classifier saw {seen:,} prompt tokens "
                f"(expected 1..{room:,}: asked, and within its room)"
            )
        if got != expected:
            misroutes.append(f"{where}: routed {got}, but {expected} for the cue alone")
    assert not problems, "; ".join(problems + misroutes)
    for line in misroutes:
        print(f"misroute: {line}")
    if misroutes and harness_settings.typed.target(stack.target).long_context_route_check:
        pytest.fail(
            "; ".join(misroutes) + f". The classifier changes its route with history length on "
            f"{stack.target}: improve the classifier prompt, or set [targets.{stack.target}] "
            "long_context_route_check = false in harness.toml to report these as notes"
        )


@pytest.mark.parametrize("over", [0, 1])
def test_just_over_the_limit_is_flagged_never_classified(
    stack: Any,
    router_http: httpx.Client,
    primary_tok: Tokenizer,
    cues: dict[str, str],
    filler: str,
    matrix: list[dict[str, Any]],
    over: int,
) -> None:
    """At the primary's max-model-len (no room for one output token) and one token past it.

    Counted as the primary sees the conversation: no trimming for the classifier can help a
    conversation the primary cannot serve.
    """
    limit = primary_max_model_len(stack)
    conv = build_exact(
        primary_tok.count_messages,
        as_sent,
        placement="last",
        cue=cues["search"],
        target_tokens=limit + over,
        filler=filler,
    )
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
    assert r.status_code == 200, f"HTTP {r.status_code}: {r.text[:300]}"
    assert reason == TOO_LONG, (
        f"{conv.tokens:,} tokens cannot be served within the primary's max-model-len "
        f"{limit:,}, yet the router answered with X-Route-Reason: {reason} (expected {TOO_LONG})"
    )


def test_the_band_matches_harness_check(
    stack: Any,
    router_http: httpx.Client,
    tok: Tokenizer,
    primary_tok: Tokenizer,
    cues: dict[str, str],
    filler: str,
    run_record: Any,
) -> None:
    """The largest conversation classified whole, found live by bisection on the primary's
    tokens, against `harness check`'s prediction from the tokenizer files.

    The bisection starts in a small window around the prediction (two requests bracket it), and
    widens to the whole range only when a bracket does not hold. Every conversation is the same
    cue-last padding cut at another length, so each prefill reuses the cached prefix of the last.
    """
    from harness.routing.headroom import engine_counter, for_spec, from_engines

    # The twin's host has the twin build's files; the GPU box (and the emulated GPU, which runs
    # from a GPU-box install) has the weights only in the compose volume: there the engines'
    # own /tokenize measures the same overhead that `harness check` computes from files.
    offline = for_spec(stack.spec, prefer_twin=stack.target == "twin")
    predicted = offline
    if offline.largest_untrimmed is None:
        predicted = from_engines(
            stack.spec,
            engine_counter(tok, f"{stack.classifier.name} /tokenize"),
            engine_counter(primary_tok, f"{stack.primary.name} /tokenize"),
        )
    largest = predicted.largest_untrimmed
    served = primary_max_model_len(stack) - 1
    outcomes: dict[int, str] = {}

    def reason_at(target: int) -> tuple[int, str]:
        conv = build(
            primary_tok.count_messages, as_sent, placement="last", cue=cues["search"],
            target_tokens=target, filler=filler,
        )  # fmt: skip
        if conv.tokens != target:
            # No exact count: the nearest one below the target is as good a probe.
            with contextlib.suppress(ValueError):
                conv = build_exact(
                    primary_tok.count_messages, as_sent, placement="last", cue=cues["search"],
                    target_tokens=target, filler=filler,
                )  # fmt: skip
        r = classify(router_http, conv.messages)
        reason = r.headers.get("X-Route-Reason", "<missing>")
        assert r.status_code == 200, f"{conv.tokens:,} tokens: HTTP {r.status_code}"
        assert reason in (CLASSIFIED, TRIMMED), f"{conv.tokens:,} tokens: {reason}"
        outcomes[conv.tokens] = reason
        return conv.tokens, reason

    # lo: a length classified whole; hi: a length classified trimmed (served + 1: none).
    lo, hi = 0, served + 1
    if largest is not None:
        for edge in (max(1, largest - 32), min(served, largest + 33)):
            tokens, reason = reason_at(edge)
            if reason == CLASSIFIED:
                lo = max(lo, tokens)
            else:
                hi = min(hi, tokens)
    if lo >= hi:
        lo, hi = 0, served + 1  # the bracket failed: outcomes disagree; search it all
    while hi - lo > 1:
        tokens, reason = reason_at((lo + hi) // 2)
        if reason == CLASSIFIED and tokens > lo:
            lo = tokens
        elif reason == TRIMMED and tokens < hi:
            hi = tokens
        else:
            break  # no padding lands between the two: the edge is known to within hi - lo
    run_record.put(
        "acceptance",
        "classifier_headroom",
        {
            "predicted_largest_untrimmed": largest,
            "measured_largest_untrimmed": lo,
            "measured_smallest_trimmed": hi if hi <= served else None,
            "requests": len(outcomes),
            "harness_check": predicted.to_dict(),
            "harness_check_offline": offline.unknown or "files",
        },
    )
    assert largest is not None, f"the band could not be predicted: {predicted.unknown}"
    # Without a band the edge is the primary's own limit.
    want = min(largest, served)
    if stack.target.startswith("twin") and predicted.same_tokenizer:
        assert (lo, hi) == (want, want + 1), (
            f"measured: {lo:,} classified whole, {hi:,} trimmed; predicted ({predicted.source}): "
            f"the largest untrimmed conversation at {largest:,} tokens (primary serves "
            f"{served:,}). The router's trimming or its label budget no longer matches "
            "ai_router.classify_prompt"
        )
    else:
        # The real engines' tokenizers and chat templates may differ, and the overhead is
        # measured on one sample conversation: a few tokens of slack.
        assert abs(lo - want) <= 8, (
            f"measured {lo:,} classified whole, predicted {want:,} ({predicted.source}; "
            f"{predicted.caveat}); outcomes {outcomes}"
        )
