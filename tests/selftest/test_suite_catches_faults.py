"""The acceptance suite catches what it exists for. Each fault is planted in the running twin
(a broken router variant) or beside it (a classifier stand-in with a shorter context), the
matching acceptance test is run against it as an `attach` target, and it must fail with a
message naming the problem."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytestmark = [pytest.mark.twin, pytest.mark.slow]
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@pytest.fixture
def twin(stack: Any) -> Any:
    if stack.target != "twin":
        pytest.skip("planting faults needs the twin's processes")
    return stack


def run_acceptance(stack: Any, select: list[str], tmp_path: Path) -> tuple[int, str]:
    env = {
        **os.environ,
        "HARNESS_ROUTER_API_KEY": stack.api_key,
        "HARNESS_TARGETS_ATTACH_ROUTER_URL": stack.entry.url,
        "HARNESS_TARGETS_ATTACH_CLASSIFIER_URL": stack.classifier.url,
        "HARNESS_TARGETS_ATTACH_PRIMARY_URL": stack.primary.url,
        "HARNESS_REPORTS_DIR": str(tmp_path),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "--tb=line",
            "--harness-target",
            "attach",
            *select,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture
def broken_router(twin: Any, stack_backend: Any) -> Iterator[Callable[[str], None]]:
    app, env = stack_backend.router_app, dict(stack_backend.router_env)

    def use(mode: str) -> None:
        stack_backend.router_app = "broken_router:create_app()"
        stack_backend.router_env = {**env, "PYTHONPATH": str(HERE), "BROKEN_ROUTER_MODE": mode}
        stack_backend.restart(twin.router.name)

    yield use
    stack_backend.router_app, stack_backend.router_env = app, env
    stack_backend.restart(twin.router.name)


def test_router_that_always_routes_local(broken_router: Any, twin: Any, tmp_path: Path) -> None:
    broken_router("always_local")
    rc, out = run_acceptance(
        twin,
        ["tests/acceptance/test_routing.py::test_eval_split_accuracy_meets_the_floor"],
        tmp_path,
    )
    assert rc == 1, out[-3000:]
    assert "the router never routes 'search'" in out, out[-3000:]


def test_router_that_falls_back_silently(broken_router: Any, twin: Any, tmp_path: Path) -> None:
    broken_router("silent_fallback")
    rc, out = run_acceptance(
        twin,
        [
            "tests/acceptance/test_long_context.py",
            "-k",
            "test_just_over_the_limit_is_flagged_never_classified",
        ],
        tmp_path,
    )
    assert rc == 1, out[-3000:]
    assert "yet the router answered with X-Route-Reason: classified" in out, out[-3000:]


def test_router_that_truncates_the_conversation(
    broken_router: Any, twin: Any, tmp_path: Path
) -> None:
    broken_router("truncate")
    rc, out = run_acceptance(
        twin,
        [
            "tests/acceptance/test_long_context.py",
            "-k",
            "test_classification_up_to_max_model_len and last and search",
        ],
        tmp_path,
    )
    assert rc == 1, out[-3000:]
    assert "the conversation was truncated or never sent" in out, out[-3000:]


@contextlib.contextmanager
def stub_classifier(model: str, max_model_len: int) -> Iterator[str]:
    """A stand-in for the classifier engine that answers what an attached run reads of it:
    /health, and /v1/models with its max_model_len. The real engine needs no restart."""
    card = {"id": model, "object": "model", "max_model_len": max_model_len}
    models = json.dumps({"object": "list", "data": [card]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = {"/health": b"", "/v1/models": models}.get(self.path)
            self.send_response(404 if body is None else 200)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_classifier_with_a_shorter_context(twin: Any, tmp_path: Path) -> None:
    with stub_classifier(twin.classifier.model_name, max_model_len=8192) as url:
        attached = SimpleNamespace(
            api_key=twin.api_key, router=twin.router, entry=twin.entry, primary=twin.primary,
            classifier=SimpleNamespace(url=url),
        )  # fmt: skip
        rc, out = run_acceptance(
            attached,
            ["tests/acceptance/test_engines.py", "-k", "test_max_model_len_matches_compose"],
            tmp_path,
        )
    assert rc == 1, out[-3000:]
    assert "serves max_model_len 8192, the compose file says 32768" in out, out[-3000:]


def test_router_that_serialises_requests(broken_router: Any, twin: Any, tmp_path: Path) -> None:
    broken_router("serialise")
    rc, out = run_acceptance(
        twin,
        ["tests/acceptance/test_concurrency.py::test_requests_beyond_max_num_seqs_wait[router]"],
        tmp_path,
    )
    assert rc == 1, out[-3000:]
    assert "the requests never reached the engine together" in out, out[-3000:]


def test_router_that_drops_session_log_lines(
    broken_router: Any, twin: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken_router("drop_log_line")
    # An attached router's session log is wherever its owner put it: here, the twin's.
    log = twin.router.log_path.with_name(f"{twin.router.name}-session.jsonl")
    monkeypatch.setenv("HARNESS_TARGETS_ATTACH_ROUTER_SESSION_LOG", str(log))
    rc, out = run_acceptance(
        twin,
        ["tests/acceptance/test_concurrency.py::test_session_log_has_one_line_per_request[router]"],
        tmp_path,
    )
    assert rc == 1, out[-3000:]
    assert "requests have no line in the router's session log" in out, out[-3000:]
