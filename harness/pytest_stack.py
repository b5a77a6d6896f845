"""The stack under test and its clients, as session fixtures of the harness's pytest plugin
(registered by harness.pytest_plugin): `stack` brings it up once per session and takes it down,
`run_record` and `stack_backend` hand the tests what it made, the clients point at its services.
A capability the target lacks is a skip (a failure where required); a failed bring-up fails the
test that asked for the stack. harness.pytest_plugin imports it first; it holds no assertion for
pytest to rewrite (PYTEST_DONT_REWRITE), so pytest does not warn that it could not.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.errors import CapabilityError, HarnessError
from harness.pytest_require import skip_or_fail

_RECORD = pytest.StashKey[Any]()
_BACKEND = pytest.StashKey[Any]()


def _target(config: pytest.Config) -> str:
    explicit = config.getoption("--harness-target")
    if explicit:
        return str(explicit)
    markexpr = config.getoption("-m") or ""
    return "gpu" if "gpu" in markexpr and "not gpu" not in markexpr else "twin"


def _compose(config: pytest.Config) -> Path:
    given = config.getoption("--harness-compose")
    return Path(given) if given else Path(config.rootpath) / "infra" / "docker-compose.yml"


@pytest.fixture(scope="session")
def harness_settings(pytestconfig: pytest.Config) -> Any:
    from harness.config import load_settings

    return load_settings()


@pytest.fixture(scope="session")
def harness_target(pytestconfig: pytest.Config) -> str:
    return _target(pytestconfig)


@pytest.fixture(scope="session")
def stack(pytestconfig: pytest.Config, harness_settings: Any, harness_target: str) -> Iterator[Any]:
    """The stack under test, brought up once per session in start order, health-gated."""
    from harness.compose.services import secret_values
    from harness.report.environment import environment
    from harness.report.record import RunRecord
    from harness.report.run_dir import new_run_dir
    from harness.report.stack_facts import preflight_section, stack_section
    from harness.stack.factory import make_backend

    compose = _compose(pytestconfig)
    run_dir = new_run_dir(harness_target)
    # The record exists before bring-up, so an interrupted or failed bring-up still leaves one.
    record = RunRecord(run_dir, harness_target, secrets=secret_values(os.environ))
    pytestconfig.stash[_RECORD] = record
    record.put("environment", "facts", environment(Path(pytestconfig.rootpath)))
    try:
        preflight = preflight_section(compose, harness_settings, harness_target)
        record.set_section("preflight", preflight)
        backend = make_backend(
            harness_target, compose, harness_settings, run_dir,
            replace_running=pytestconfig.getoption("--harness-replace-running"),
            keep_stack=pytestconfig.getoption("--harness-keep-stack"),
            real_xai=pytestconfig.getoption("--harness-xai"),
            progress=_progress_writer(pytestconfig),
        )  # fmt: skip
        pytestconfig.stash[_BACKEND] = backend
        started = time.monotonic()
        up = backend.up()
    except CapabilityError as exc:
        del pytestconfig.stash[_RECORD]
        shutil.rmtree(run_dir, ignore_errors=True)
        skip_or_fail(pytestconfig, harness_target, str(exc))
        raise  # unreachable: skip/fail raise
    except HarnessError as exc:
        record.put("startup", "error", str(exc))
        pytest.fail(f"bring-up of the {harness_target} stack failed: {exc}", pytrace=False)
    for secret in [up.api_key, *up.secrets]:
        record.add_secret(secret)
    record.put("timings", "bring_up_s", round(time.monotonic() - started, 2))
    for key, value in stack_section(up).items():
        record.put("stack", key, value)
    from harness.progress import use

    try:
        # Load-run ticks (run_profile reports through harness.progress.current()) reach the
        # terminal the way bring-up lines do, past output capture.
        with use(_progress_writer(pytestconfig)):
            yield up
    finally:
        if not pytestconfig.getoption("--harness-keep-stack"):
            backend.down()


def _progress_writer(config: pytest.Config) -> Any:
    """Bring-up progress through the terminal reporter, with output capture suspended for the
    write: under fd capture (pytest's default) the reporter's stream is the captured fd 1 while
    a fixture or test runs, and a line written then would show only if the test failed.

    Best-effort: after an SSH hang-up the terminal returns EIO to every write, and the teardown
    that then restores production must not stop at its first line of progress."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return print
    capture = config.pluginmanager.get_plugin("capturemanager")
    # The load ticker writes from its own thread; reentrant, because the restore's interrupt
    # handler (harness.stack.shield) may write on the main thread in the middle of a line.
    lock = threading.RLock()

    def write(line: str) -> None:
        suspended = capture.global_and_fixture_disabled() if capture else contextlib.nullcontext()
        with lock, contextlib.suppress(OSError), suspended:
            reporter.ensure_newline()
            reporter.write_line(f"harness: {line}")
            reporter.flush()

    return write


@pytest.fixture(scope="session")
def stack_backend(pytestconfig: pytest.Config, stack: Any) -> Any:
    """The backend that brought `stack` up, for tests that restart a service."""
    return pytestconfig.stash[_BACKEND]


@pytest.fixture(scope="session")
def run_record(pytestconfig: pytest.Config, stack: Any) -> Any:
    """The run's RunRecord: tests put their results in it, next to the stack's facts."""
    return pytestconfig.stash[_RECORD]


@pytest.fixture(scope="session")
def router_client(stack: Any) -> Any:
    """The official openai SDK, pointed at the ai-router (through the stack's traefik where it
    runs one) with the harness's key."""
    import openai

    return openai.OpenAI(base_url=stack.entry.url + "/v1", api_key=stack.api_key, max_retries=0)


@pytest.fixture(scope="session")
def classifier_client(stack: Any) -> Any:
    import openai

    return openai.OpenAI(base_url=stack.classifier.url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="session")
def primary_client(stack: Any) -> Any:
    import openai

    return openai.OpenAI(base_url=stack.primary.url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="session")
def router_http(stack: Any) -> Iterator[Any]:
    """httpx client on the ai-router (through the stack's traefik where it runs one),
    authorized, for what the SDK hides (headers, raw SSE)."""
    import httpx

    with httpx.Client(
        base_url=stack.entry.url,
        headers={"Authorization": f"Bearer {stack.api_key}"},
        timeout=httpx.Timeout(600.0, connect=10.0),
    ) as client:
        yield client
