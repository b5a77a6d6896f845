"""Faults on the running twin: xAI misbehaving, the classifier gone or hanging, the primary
killed under load. Each asserts what the router returned and what the harness reported, and
puts the stack back the way it found it."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from harness.load.runner import run_profile
from harness.load.slo import check_slos
from harness.routing.corpus import ROUTING_EVAL, load_routing
from harness.routing.evaluate import evaluate, route_of
from harness.routing.metrics import acceptance_problems
from harness.telemetry.prom import scrape

# None of these depends on the primary's KV pool: a restore that kv-pressure left pending can
# wait for the primary-kill fault's own restart (tests/conftest.py).
pytestmark = [pytest.mark.twin, pytest.mark.slow, pytest.mark.any_primary_pool]
# The ai-router's classifier timeout while the classifier hangs: the twin's default (120 s, for
# 32k-token prefills on two cores) would make the test wait two minutes for the same fallback.
HANGING_TIMEOUT_S = 5.0
SEARCH = [{"role": "user", "content": "What is the weather in Lisbon today?"}]
LOCAL = [{"role": "user", "content": "Write a Python function that reverses a string."}]


@pytest.fixture
def twin(stack: Any) -> Any:
    if stack.target != "twin":
        pytest.skip("fault injection needs the twin's processes and fake xAI")
    return stack


@pytest.fixture
def xai_faults(twin: Any) -> Iterator[Any]:
    url = twin.services["fake-xai"].url

    def set_faults(**faults: Any) -> None:
        r = httpx.post(url + "/_faults", json=faults, timeout=5)
        assert r.status_code == 200, r.text

    yield set_faults
    httpx.post(url + "/_faults", json={"mode": "ok"}, timeout=5)


def chat(http: httpx.Client, messages: list[dict[str, str]], **extra: Any) -> httpx.Response:
    return http.post(
        "/v1/chat/completions", json={"model": "ai-router", "messages": messages, **extra}
    )


@pytest.mark.parametrize(
    ("faults", "status"),
    [({"mode": "status", "status": 429}, 429), ({"mode": "status", "status": 500}, 502)],
)
def test_xai_errors_become_openai_errors(
    router_http: httpx.Client, xai_faults: Any, faults: dict[str, Any], status: int
) -> None:
    xai_faults(**faults)
    r = chat(router_http, SEARCH)
    assert r.headers["X-Route"] == "search"
    assert r.status_code == status, r.text[:300]
    assert r.json()["error"]["message"]
    if status == 429:
        assert r.headers.get("Retry-After")


def test_an_empty_xai_answer_is_retried_and_flagged(
    router_http: httpx.Client, xai_faults: Any
) -> None:
    xai_faults(mode="empty_length", count=1)
    r = chat(router_http, SEARCH)
    assert r.status_code == 200
    assert r.headers.get("X-Upstream-Retry") == "empty_output"
    assert r.json()["choices"][0]["message"]["content"].strip()


@pytest.mark.parametrize("stream", [False, True])
def test_an_xai_answer_empty_twice_is_an_error_never_an_empty_200(
    router_http: httpx.Client, xai_faults: Any, stream: bool
) -> None:
    xai_faults(mode="empty_length", count=2)
    r = chat(router_http, SEARCH, stream=stream)
    assert r.status_code == 502, r.text[:300]
    assert "no text" in r.json()["error"]["message"].lower(), r.json()["error"]["message"]


@pytest.fixture
def short_classifier_timeout(twin: Any, stack_backend: Any) -> Iterator[float]:
    """The ai-router restarted with ROUTER_CLASSIFIER_TIMEOUT_S=5, and restored afterwards."""
    env = dict(stack_backend.router_env)
    stack_backend.router_env = {**env, "ROUTER_CLASSIFIER_TIMEOUT_S": str(HANGING_TIMEOUT_S)}
    try:
        stack_backend.restart(twin.router.name)
        yield HANGING_TIMEOUT_S
    finally:
        stack_backend.router_env = env
        stack_backend.restart(twin.router.name)


def test_hanging_classifier_falls_back_flagged(
    twin: Any, router_http: httpx.Client, short_classifier_timeout: float
) -> None:
    limit = short_classifier_timeout
    # Once while the classifier answers: the router learns its label length (/tokenize) on the
    # first request, which would otherwise spend a timeout of its own below.
    assert route_of(router_http, SEARCH)[1] == "classified"
    pgid = twin.classifier.pid
    os.killpg(pgid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        route, reason = route_of(router_http, SEARCH)
        waited = time.monotonic() - started
    finally:
        os.killpg(pgid, signal.SIGCONT)
    assert reason == "fallback:timeout", reason
    assert route == "local", "the fallback did not take the default route"
    assert limit - 0.5 <= waited < limit + 10, (
        f"the fallback took {waited:.1f} s, the router's classifier timeout is {limit:.0f} s"
    )


def test_classifier_down_every_request_falls_back_and_acceptance_fails(
    twin: Any, stack_backend: Any, router_http: httpx.Client, harness_settings: Any
) -> None:
    os.killpg(twin.classifier.pid, signal.SIGKILL)
    try:
        items = [it for it in load_routing(ROUTING_EVAL) if it.route == "search"][:10]
        report = evaluate(router_http, items, ("local", "search"))
        r = chat(router_http, LOCAL, max_tokens=8)
    finally:
        stack_backend.restart(twin.classifier.name)
    assert report.fallbacks == len(items)
    assert r.status_code == 200 and r.headers["X-Route-Reason"] == "fallback:unreachable"
    problems = acceptance_problems(report, 0.95)
    assert problems and "fell back instead of being classified" in problems[0]
    assert route_of(router_http, SEARCH)[1] == "classified", "the restarted classifier is not used"


def running_requests(url: str) -> float:
    try:
        return scrape(url).value("vllm:num_requests_running")
    except httpx.HTTPError:
        return 0.0


def test_primary_killed_under_steady_load(
    twin: Any,
    stack_backend: Any,
    router_http: httpx.Client,
    harness_settings: Any,
    primary_pool: Any,
) -> None:
    result: dict[str, Any] = {}

    def load() -> None:
        result["r"] = run_profile(
            twin,
            "steady",
            twin.run_dir / "load" / "fault-primary-killed",
            duration_s=20,
            max_tokens=32,
        )

    t = threading.Thread(target=load)
    t.start()
    # Killed only once it is serving: a kill before the load arrives would test "primary
    # down", not "killed under load".
    deadline = time.monotonic() + 300
    while running_requests(twin.primary.url) <= 0:
        if not t.is_alive() or time.monotonic() > deadline:
            t.join(timeout=600)
            pytest.fail("the steady load never had a request running on the primary to kill")
        time.sleep(0.2)
    killed_at, killed_epoch = time.monotonic(), time.time()
    os.killpg(twin.primary.pid, signal.SIGKILL)
    t.join(timeout=600)
    try:
        summary = result["r"].summary
        failed = [r for r in result["r"].records if not r.ok]
        assert summary["failed"] > 0, "killing the primary produced no failed request"
        # What makes this "under load": requests sent before the kill failed because of it.
        in_flight = [r for r in failed if r.actual_start < killed_epoch]
        assert in_flight, (
            f"none of the {len(failed)} failed requests was sent before the kill: the primary "
            "was killed before the load reached it"
        )
        statuses = {r.status for r in failed}
        # In-flight streams already had their 200: the error arrives as an SSE error event.
        assert statuses <= {0, 200, 502, 503, 504}, f"unexpected statuses {statuses}"
        assert all(r.error for r in failed), "a failed request carries no error"
        assert statuses & {502, 503}, f"no OpenAI-shaped 502/503 came back: {summary['errors']}"
        violations = check_slos(harness_settings, summary, twin.primary.name)
        assert any("error rate" in v for v in violations), "the run was not marked failed"
        slowest = max((r.e2e_s or 0) for r in failed)
        assert slowest < 60, f"a failed request took {slowest:.0f} s to fail"
    finally:
        # With the backend's current settings: this is also the restore a kv-pressure run left.
        stack_backend.restart(twin.primary.name)
        primary_pool.restarted(twin.primary.name)
    r = chat(router_http, LOCAL, max_tokens=8)
    assert r.status_code == 200 and r.headers["X-Route"] == "local"
    print(f"primary killed {time.monotonic() - killed_at:.0f} s ago; serving again")
