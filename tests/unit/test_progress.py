"""Live progress: health-wait reports, the plain and rich reporters, the load ticker."""

from __future__ import annotations

import functools
import io
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_bringup import make

from harness import progress
from harness.errors import StartupError
from harness.progress import (
    PlainReporter,
    RecordTally,
    RichReporter,
    choose,
    current,
    latest_row,
    load_text,
    load_ticker,
    use,
)
from harness.stack import health, process
from harness.stack.health import health_waiter, wait_healthy

# -- wait_healthy's on_wait -------------------------------------------------------------------


class FakeClock:
    """Time moves only when the poll loop sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def answering(status: int) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(status))


def refusing() -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    return httpx.MockTransport(handler)


def test_on_wait_hears_elapsed_budget_and_last_state_every_report_period() -> None:
    clock = FakeClock()
    calls: list[tuple[float, float, str]] = []
    with pytest.raises(StartupError, match="not healthy within 45 s"):
        wait_healthy(
            "vllm-primary", "http://engine/health", timeout_s=45, interval_s=0.5,
            on_wait=lambda *a: calls.append(a), clock=clock, sleep=clock.sleep,
            transport=answering(503),
        )  # fmt: skip
    assert calls == [(10.0, 45, "HTTP 503"), (20.0, 45, "HTTP 503"), (30.0, 45, "HTTP 503"),
                     (40.0, 45, "HTTP 503")]  # fmt: skip


def test_a_slow_poll_does_not_bring_two_reports_back_to_back() -> None:
    clock = FakeClock()
    calls: list[float] = []

    def slow(request: httpx.Request) -> httpx.Response:
        clock.now += 7.0  # a poll that hangs most of its client timeout
        raise httpx.ReadTimeout("read timed out", request=request)

    with pytest.raises(StartupError):
        wait_healthy(
            "vllm-primary", "http://engine/health", timeout_s=60,
            on_wait=lambda elapsed, budget, last: calls.append(elapsed), clock=clock,
            sleep=clock.sleep, transport=httpx.MockTransport(slow),
        )  # fmt: skip
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert calls and all(gap >= 10.0 for gap in gaps)


def test_the_waiting_line_names_the_service_its_budget_and_the_last_error() -> None:
    clock = FakeClock()
    lines: list[str] = []
    with pytest.raises(StartupError, match="last: ConnectError"):
        wait_healthy(
            "vllm-primary", "http://engine/health", timeout_s=1245, interval_s=4.0,
            on_wait=health_waiter("vllm-primary", lines.append), report_every_s=40,
            clock=clock, sleep=clock.sleep, transport=refusing(),
        )  # fmt: skip
    # The console says what a refused connection means; the timeout's error keeps its name.
    assert lines[0] == "still waiting for vllm-primary: 40/1245 s, last: not listening yet"
    assert len(lines) == 31  # 40, 80, ... 1240


def test_a_service_healthy_within_the_period_reports_nothing() -> None:
    clock = FakeClock()
    calls: list[Any] = []
    wait_healthy(
        "vllm-router", "http://engine/health", timeout_s=300, on_wait=calls.append,
        clock=clock, sleep=clock.sleep, transport=answering(200),
    )  # fmt: skip
    assert calls == []


class _Warming(BaseHTTPRequestHandler):
    ready_at = 0.0

    def do_GET(self) -> None:
        self.send_response(200 if time.monotonic() >= self.ready_at else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def warming_server() -> Iterator[str]:
    """A local service that answers 503 for its first second, then 200."""
    handler = type("Warming", (_Warming,), {"ready_at": time.monotonic() + 1.0})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/health"
    finally:
        server.shutdown()
        server.server_close()


def test_on_wait_against_a_real_server_with_a_short_period(warming_server: str) -> None:
    calls: list[tuple[float, float, str]] = []
    wait_healthy(
        "vllm-router", warming_server, timeout_s=10, interval_s=0.05,
        on_wait=lambda *a: calls.append(a), report_every_s=0.25,
    )  # fmt: skip
    assert 2 <= len(calls) <= 5
    elapsed = [c[0] for c in calls]
    assert all(b - a >= 0.25 for a, b in itertools.pairwise(elapsed))
    assert all(budget == 10 and last == "HTTP 503" for _, budget, last in calls)


def test_the_process_backend_reports_its_health_waits_through_progress(
    real_compose: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        process, "wait_healthy", functools.partial(health.wait_healthy, report_every_s=0.3)
    )
    b = make(real_compose, tmp_path, delays={"vllm-router": 1.5})
    b.only = ("vllm-router",)
    lines: list[str] = []
    b.progress = lines.append
    try:
        b.up()
    finally:
        b.down()
    waits = [ln for ln in lines if ln.startswith("still waiting for vllm-router: ")]
    assert waits and waits[0].endswith("/20 s, last: not listening yet")


@pytest.mark.parametrize(
    "seen, said",
    [
        ("ConnectError", "not listening yet"),
        ("RemoteProtocolError", "not listening yet"),
        ("HTTP 503", "HTTP 503"),
        ("ReadTimeout", "ReadTimeout"),
        ("no answer yet", "no answer yet"),
    ],
)
def test_a_health_wait_says_not_listening_yet_and_names_other_errors(seen: str, said: str) -> None:
    lines: list[str] = []
    health.health_waiter("vllm-primary", lines.append)(40, 1245, seen)
    assert lines == [f"still waiting for vllm-primary: 40/1245 s, last: {said}"]


# -- choosing a reporter ----------------------------------------------------------------------


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _auto_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(progress.MODE_ENV, raising=False)


def test_not_a_terminal_gets_plain_lines() -> None:
    out = io.StringIO()
    reporter = choose(stream=out)
    assert isinstance(reporter, PlainReporter)
    reporter.line("starting vllm-router")
    with reporter.task("steady", 90) as task:
        task.update(35.2, "212 req · 0 err")
    reporter.waiting("vllm-primary", 40, 1245, "ConnectError")
    assert out.getvalue().splitlines() == [
        "starting vllm-router",
        "steady: 35/90 s · 212 req · 0 err",
        "still waiting for vllm-primary: 40/1245 s, last: ConnectError",
    ]


def test_plain_lines_go_to_stdout_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    reporter = choose()  # pytest's captured stdout is no terminal
    reporter("pulling vllm/vllm-openai")
    assert capsys.readouterr().out == "pulling vllm/vllm-openai\n"


def test_a_terminal_gets_rich_unless_plain_is_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(choose(stream=FakeTerminal()), RichReporter)
    monkeypatch.setenv(progress.MODE_ENV, "plain")
    assert isinstance(choose(stream=FakeTerminal()), PlainReporter)


def test_a_given_writer_wins_over_the_terminal() -> None:
    lines: list[str] = []
    reporter = choose(lines.append, stream=FakeTerminal())
    reporter.line("harness: twin: building")
    assert isinstance(reporter, PlainReporter) and lines == ["harness: twin: building"]


def test_use_installs_the_current_reporter_for_a_block() -> None:
    lines: list[str] = []
    with use(lines.append):
        current().line("inside")
    assert lines == ["inside"]
    assert isinstance(current(), PlainReporter) and current().write is print  # type: ignore[attr-defined]


def test_rich_prints_lines_and_leaves_each_tasks_last_numbers() -> None:
    out = FakeTerminal()
    reporter = choose(stream=out)
    assert isinstance(reporter, RichReporter)
    with reporter:
        reporter.waiting("vllm-primary", 40, 1245, "ConnectError")
        assert reporter._waits  # a bar while the wait lasts
        reporter.line("vllm-primary healthy in 52.0 s")
        assert not reporter._tasks  # the wait's outcome ends its bar
        with reporter.task("steady", 90) as task:
            task.update(35, "212 req · 0 err")
        assert not reporter._tasks
    text = out.getvalue()
    assert "vllm-primary healthy in 52.0 s\n" in text
    assert "steady: 35/90 s · 212 req · 0 err\n" in text


# -- the load ticker --------------------------------------------------------------------------


def row(engine: str, kv: float, running: float, waiting: float) -> dict[str, Any]:
    return {"engine": engine, "kv_usage": kv, "running": running, "waiting": waiting}


def test_the_load_line_is_made_from_sample_data() -> None:
    assert (
        load_text(212, 0, row("vllm-primary", 0.831, 3.0, 2.0))
        == "212 req · 0 err · KV 83% · running 3 · waiting 2"
    )
    assert load_text(0, 0, None) == "0 req · 0 err · no /metrics yet"
    assert load_text(5, 1, row("vllm-primary", 0.0042, 2, 0)).endswith(
        "KV 0.4% · running 2 · waiting 0"
    )


class Rows:
    def __init__(self, *rows: dict[str, Any]) -> None:
        self.rows = list(rows)


def test_the_newest_row_of_the_engine_is_used() -> None:
    source = Rows(
        row("vllm-primary", 0.2, 1, 0), row("vllm-router", 0.01, 1, 0),
        row("vllm-primary", 0.5, 3, 1), row("vllm-router", 0.02, 0, 0),
    )  # fmt: skip
    assert latest_row(source, "vllm-primary") == row("vllm-primary", 0.5, 3, 1)
    assert latest_row(source, "other") is None


def record(ok: bool) -> str:
    return json.dumps({"user": "u", "target": "router", "ok": ok, "status": 200 if ok else 0})


def test_the_tally_counts_whole_lines_only_and_errors_by_ok(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    tally = RecordTally(path)
    assert tally.poll() == (0, 0)  # not written yet
    path.write_text(record(True) + "\n" + record(False) + "\n" + record(True)[:10])
    assert tally.poll() == (2, 1)
    with path.open("a") as fh:
        fh.write(record(True)[10:] + "\n" + record(False) + "\n")
    assert tally.poll() == (4, 2)


def test_the_ticker_reports_elapsed_requests_errors_and_engine_state(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    path.write_text(record(True) + "\n" + record(False) + "\n")
    lines: list[str] = []
    source = Rows(row("vllm-primary", 0.83, 3, 2))
    with load_ticker(
        "steady", 90, source, path, "vllm-primary", reporter=PlainReporter(lines.append),
        every_s=0.05,
    ):  # fmt: skip
        time.sleep(0.3)
    assert lines
    assert lines[0] == "steady: 0/90 s · 2 req · 1 err · KV 83% · running 3 · waiting 2"


def test_progress_inside_a_test_reaches_the_terminal_under_fd_capture(tmp_path: Path) -> None:
    """pytest's default capture points fd 1 at a temporary file while a fixture or test runs;
    the plugin's writer suspends it, so a bring-up line shows as it happens, not only when a
    test fails."""
    (tmp_path / "test_child.py").write_text(
        "from harness.pytest_stack import _progress_writer\n"
        "def test_a(pytestconfig):\n"
        "    _progress_writer(pytestconfig)('bring-up line')\n"
        "    print('captured print')\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "test_child.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "HARNESS_REPORTS_DIR": str(tmp_path / "reports")},
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:]
    assert "harness: bring-up line" in out.stdout, out.stdout[-2000:]
    assert "captured print" not in out.stdout  # capture itself still holds
