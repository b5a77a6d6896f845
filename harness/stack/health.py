"""Waiting for a service to become healthy, with a timeout that says what it waited for."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx

from harness.errors import StartupError
from harness.stack.logs import root_cause, tail


def wait_healthy(
    name: str,
    url: str,
    *,
    timeout_s: float,
    exited: Callable[[], int | None] = lambda: None,
    log_path: Path | None = None,
    interval_s: float = 0.5,
) -> float:
    """Poll `url` until it answers 200; returns the time.time() it did.

    Fails fast when `exited()` returns an exit code (the process or container died), and after
    `timeout_s` otherwise; both raise StartupError carrying the log tail.
    """
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    with httpx.Client(timeout=5.0) as client:
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
            if time.monotonic() >= deadline:
                raise StartupError(
                    name,
                    f"not healthy within {timeout_s:.0f} s (waited for 200 from {url}; "
                    f"last: {last})",
                    _tail(log_path),
                )
            time.sleep(interval_s)


def _tail(path: Path | None) -> str:
    return tail(path) if path else ""
