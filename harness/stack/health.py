"""Waiting for a service to become healthy, with a timeout that says what it waited for."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx

from harness.errors import StartupError
from harness.progress import OnWait, Write, as_reporter
from harness.stack.logs import root_cause, tail


def wait_healthy(
    name: str,
    url: str,
    *,
    timeout_s: float,
    exited: Callable[[], int | None] = lambda: None,
    log_path: Path | None = None,
    interval_s: float = 0.5,
    on_wait: OnWait | None = None,
    report_every_s: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    transport: httpx.BaseTransport | None = None,
) -> float:
    """Poll `url` until it answers 200; returns the time.time() it did.

    Fails fast when `exited()` returns an exit code (the process or container died), and after
    `timeout_s` otherwise; both raise StartupError carrying the log tail. While it waits,
    `on_wait(elapsed_s, timeout_s, last)` hears how long it has waited and what the last poll
    saw, at most every `report_every_s`: an engine's budget runs to twenty minutes, and
    silence for that long reads as a hang.
    """
    start = clock()
    deadline = start + timeout_s
    next_report = start + report_every_s
    last = "no answer yet"
    with httpx.Client(timeout=5.0, transport=transport) as client:
        while True:
            code = exited()
            if code is not None:
                reason = f"exited with code {code} during startup"
                cause = root_cause(log_path) if log_path else None
                if cause:
                    reason += f": {cause}"
                raise StartupError(name, reason, _tail(log_path))
            try:
                r = client.get(url)
                if r.status_code == 200:
                    return time.time()
                last = f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            now = clock()
            if now >= deadline:
                raise StartupError(
                    name,
                    f"not healthy within {timeout_s:.0f} s (waited for 200 from {url}; "
                    f"last: {last})",
                    _tail(log_path),
                )
            if on_wait is not None and now >= next_report:
                on_wait(now - start, timeout_s, last)
                # From this report, not the schedule: a poll that hung for its 5 s timeout
                # must not cause two reports back to back.
                next_report = now + report_every_s
            sleep(interval_s)


# What a poll of a service that has not opened its port yet (or is closing a half-open
# connection while it starts) runs into: the normal state of a starting service, said as such.
NOT_LISTENING = ("ConnectError", "RemoteProtocolError")


def plain_state(last: str) -> str:
    """What the last poll saw, for people: "not listening yet" for a port that does not answer
    yet; an HTTP status or any other error as it is."""
    return "not listening yet" if last in NOT_LISTENING else last


def health_waiter(name: str, progress: Write) -> OnWait:
    """`on_wait` for service `name` that reports through a backend's `progress=` seam: a bar
    on a terminal, else "still waiting for NAME: 40/1245 s, last: not listening yet" lines."""
    reporter = as_reporter(progress)

    def on_wait(elapsed_s: float, budget_s: float, last: str) -> None:
        reporter.waiting(name, elapsed_s, budget_s, plain_state(last))

    return on_wait


def _tail(path: Path | None) -> str:
    return tail(path) if path else ""
