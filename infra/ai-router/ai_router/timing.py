"""Where a chat request's time goes before its answer starts: the `Server-Timing` header and the
same figures in the session log.

`Server-Timing: classify;dur=12.3, upstream_connect;dur=0.8, upstream_ttfb;dur=45.1,
total;dur=60.2` (W3C Server Timing), every duration in milliseconds:
- classify: the routing decision, the classifier call with any counting it needed (the same
  interval as X-Classifier-Ms, which gives it in whole milliseconds);
- upstream_connect: from handing the request to the HTTP client until its head starts going
  out: waiting for a pooled connection, the TCP connect, TLS; near 0 on a kept-alive one;
- upstream_ttfb: from the request head going out until the first bytes of the answer that the
  router passes on: a stream's first chunk (xAI: its first text), or a whole answer, which an
  engine sends in one piece once it is complete;
- total: from the router having the request until it sends the response head.
The parts nest: total minus the other three is the router's own work (parsing, the session
log's conversation shape, building the upstream request).

Every figure is known before the head goes out, streamed or not: the router reads a stream's
first chunk before it answers (so that an upstream that fails before any data still gets an
honest HTTP status), and the head leaves with that chunk. A call that is retried (xAI's empty
answer) adds each attempt's connect and first-byte time. A figure that was never reached (the
upstream failed first, or no upstream was called) is left out of the header.

The timings of the request being served live in a context variable: the app starts them per
request (`start`), the route modules fill them (`current`), and neither passes them through
the route modules' signatures.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

HEADER = "Server-Timing"
CLASSIFY, CONNECT, TTFB, TOTAL = "classify", "upstream_connect", "upstream_ttfb", "total"
# httpcore's trace event for a request head starting to go out on a connection it holds.
_SENDING = ".send_request_headers.started"


class RequestTiming:
    """One request's durations, in seconds, by Server-Timing name."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.durations: dict[str, float] = {}
        self._asked: float | None = None  # the current upstream attempt was handed over
        self._sending: float | None = None  # its head started going out

    def set(self, name: str, seconds: float) -> None:
        self.durations[name] = seconds

    def upstream_extensions(self) -> dict[str, Any]:
        """httpx request extensions that see an upstream request's head go out (build_request's
        `extensions`). Around the send: `asking` just before it, `first_byte` once the answer's
        first bytes are in hand."""
        return {"trace": self._trace}

    def asking(self) -> None:
        """An upstream attempt is handed to the HTTP client now (its body already encoded)."""
        self._asked, self._sending = self.clock(), None

    def _trace(self, event: str, info: dict[str, Any]) -> None:
        # The last one counts: a kept-alive connection found closed is replaced and the head
        # sent again, and that wait is connecting too.
        if event.endswith(_SENDING):
            self._sending = self.clock()

    def first_byte(self) -> None:
        """The current upstream attempt has its first bytes (or its whole answer)."""
        if self._asked is None:
            return
        now = self.clock()
        # A transport without tracing (in-process fakes) gives no head event: all is first byte.
        sending = self._sending if self._sending is not None else self._asked
        self._add(CONNECT, sending - self._asked)
        self._add(TTFB, now - sending)
        self._asked = self._sending = None

    def _add(self, name: str, seconds: float) -> None:
        self.durations[name] = self.durations.get(name, 0.0) + max(0.0, seconds)

    def header(self) -> str:
        """The Server-Timing value, in the order the parts happen; empty when nothing ran."""
        order = (CLASSIFY, CONNECT, TTFB, TOTAL)
        return ", ".join(
            f"{name};dur={self.durations[name] * 1000:.1f}"
            for name in order
            if name in self.durations
        )

    def ms(self, name: str) -> float | None:
        seconds = self.durations.get(name)
        return None if seconds is None else round(seconds * 1000, 1)


_current: ContextVar[RequestTiming | None] = ContextVar("ai_router_timing", default=None)


def start() -> RequestTiming:
    """Fresh timings for the request this thread now serves."""
    timing = RequestTiming()
    _current.set(timing)
    return timing


def current() -> RequestTiming:
    """The timings of the request being served; outside a request, throwaway ones."""
    timing = _current.get()
    return timing if timing is not None else RequestTiming()
