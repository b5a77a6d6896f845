"""On `attach` the router is production's, and it forwards search-routed chats to the paid xAI
API. Without --harness-xai nothing is sent that it would forward there: the search route's full
request skips after checking the classification through /v1/route, and load users send only
`local` prompts."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from harness.compose import load_stack
from harness.config import Settings
from harness.load.prompts import chat_prompts, chat_user_prompts
from harness.load.runner import profile_settings
from harness.load.settings import LoadSettings
from harness.stack import attach
from harness.stack.base import ServiceHandle, Stack
from harness.stack.factory import make_backend

ROOT = Path(__file__).resolve().parents[2]
LOCAL, SEARCH = set(chat_prompts("local")), set(chat_prompts("search"))


def load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_under_test_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the stack: attach says whether search may be sent ----------------------------------------


@pytest.fixture
def attach_up(monkeypatch: pytest.MonkeyPatch, real_compose: Path, tmp_path: Path) -> Any:
    """`make_backend("attach", ...).up()` against nothing: health, discovery and the twin's
    state stubbed."""
    monkeypatch.setenv("HARNESS_ROUTER_API_KEY", "k")
    monkeypatch.setattr(attach, "wait_healthy", lambda *a, **kw: 1.0)
    monkeypatch.setattr(attach, "locate", lambda stack: None)
    monkeypatch.setattr(attach.state, "twin_session_log", lambda url: None)

    def up(real_xai: bool) -> Stack:
        settings = Settings(path=None, environ={})
        return make_backend("attach", real_compose, settings, tmp_path, real_xai=real_xai).up()

    return up


def test_attach_without_harness_xai_allows_no_search(attach_up: Any) -> None:
    stack = attach_up(real_xai=False)
    assert stack.search_allowed is False
    assert any("--harness-xai" in note for note in stack.notes), stack.notes


def test_attach_with_harness_xai_allows_search(attach_up: Any) -> None:
    stack = attach_up(real_xai=True)
    assert stack.search_allowed is True
    assert not any("--harness-xai" in note for note in stack.notes)


def test_an_attached_twin_that_harness_up_started_talks_to_the_fake(
    attach_up: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    log = tmp_path / "run" / "logs" / "ai-router-session.jsonl"
    monkeypatch.setattr(attach.state, "twin_session_log", lambda url: log)
    assert attach_up(real_xai=False).search_allowed is True


# -- load: the settings carry it to the locust subprocess, the chat users obey ----------------


def stack_for_load(real_compose: Path, tmp_path: Path, search_allowed: bool) -> Stack:
    stack = Stack("attach", load_stack(real_compose), tmp_path, api_key="k")
    stack.search_allowed = search_allowed
    for role, port in (("classifier", 1), ("primary", 2), ("router", 3)):
        name = stack.spec.role(role).name
        stack.services[name] = ServiceHandle(name, role, f"http://127.0.0.1:{port}")
    return stack


@pytest.mark.parametrize("allowed", [False, True])
def test_profile_settings_carry_the_stacks_search_consent(
    real_compose: Path, tmp_path: Path, allowed: bool
) -> None:
    stack = stack_for_load(real_compose, tmp_path, allowed)
    settings = profile_settings(stack, "steady", tmp_path / "r.jsonl", duration_s=1.0)
    assert settings.search_allowed is allowed
    env = settings.to_env()
    assert env["HARNESS_LOAD_SEARCH_ALLOWED"] == ("1" if allowed else "0")
    assert LoadSettings.from_env(env).search_allowed is allowed


def test_load_settings_allow_search_unless_told_not_to() -> None:
    # A locust run started by hand, without the variable, is the twin's default: both routes.
    assert LoadSettings.from_env({}).search_allowed is True


def test_chat_prompts_without_search_are_local_only() -> None:
    assert SEARCH, "the corpus has no single-turn search prompt"
    without = chat_user_prompts(search_allowed=False)
    assert without and set(without) <= LOCAL and not set(without) & SEARCH
    assert set(chat_user_prompts(search_allowed=True)) & SEARCH


@pytest.mark.parametrize("allowed", ["0", "1"])
def test_the_locust_chat_user_draws_from_the_allowed_routes(allowed: str) -> None:
    """The users module as the locust subprocess imports it (in a subprocess: gevent must not
    reach this one), with the settings' variables as the runner sets them."""
    code = (
        "import json, harness.load.users as u\n"
        "print(json.dumps({'chat': u.ChatUser.prompts, 'settings': u.SETTINGS.search_allowed}))"
    )
    env = {**os.environ, "HARNESS_LOAD_SEARCH_ALLOWED": allowed}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd=ROOT
    )
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert doc["settings"] is (allowed == "1")
    sent = set(doc["chat"])
    if allowed == "0":
        assert sent <= LOCAL and not sent & SEARCH, sorted(sent & SEARCH)[:3]
    else:
        assert sent & SEARCH and sent & LOCAL


# -- acceptance: the search route's full request ----------------------------------------------


def router(chats: list[dict[str, Any]], route: str) -> httpx.Client:
    """A router that answers /v1/route with `route` and records every chat request."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/route":
            return httpx.Response(
                200,
                json={"route": route, "reason": "classified", "classifier_ms": 1},
                headers={"X-Route": route, "X-Route-Reason": "classified"},
            )
        chats.append(json.loads(request.content))
        time.sleep(0.002)  # the classification it reports takes its time
        headers = {"X-Route": route, "X-Route-Reason": "classified", "X-Classifier-Ms": "1"}
        return httpx.Response(200, json={}, headers=headers)

    return httpx.Client(base_url="http://router", transport=httpx.MockTransport(handle))


def test_the_search_full_request_is_not_sent_on_attach_without_consent(
    real_compose: Path, tmp_path: Path
) -> None:
    routing = load_module(ROOT / "tests" / "acceptance" / "test_routing.py")
    stack = stack_for_load(real_compose, tmp_path, search_allowed=False)
    chats: list[dict[str, Any]] = []
    with pytest.raises(pytest.skip.Exception, match="--harness-xai"):
        routing.test_full_request_follows_the_classified_route(
            router(chats, "search"), stack, "search"
        )
    assert chats == []
    # The local route's full request is still sent.
    routing.test_full_request_follows_the_classified_route(router(chats, "local"), stack, "local")
    assert len(chats) == 1


def test_the_search_full_request_is_sent_with_consent(real_compose: Path, tmp_path: Path) -> None:
    routing = load_module(ROOT / "tests" / "acceptance" / "test_routing.py")
    stack = stack_for_load(real_compose, tmp_path, search_allowed=True)
    chats: list[dict[str, Any]] = []
    routing.test_full_request_follows_the_classified_route(router(chats, "search"), stack, "search")
    assert len(chats) == 1


# -- harness tune --target gpu verifies on attach ---------------------------------------------


def test_tune_on_the_gpu_passes_harness_xai_only_when_asked(
    monkeypatch: pytest.MonkeyPatch, real_compose: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli import tune

    jobs: list[list[str]] = []
    monkeypatch.setattr(tune, "run_job", lambda target, extra: jobs.append([target, *extra]))
    restarter = tune.GpuRestarter(real_compose, engines=True, others=False)
    restarter.verify(["-x"])
    assert jobs[-1][0] == "attach" and "--harness-xai" not in jobs[-1]
    assert "--pytest-args=--harness-xai" in capsys.readouterr().out
    restarter.verify(["--harness-xai"])
    assert "--harness-xai" in jobs[-1]
