"""The replay's locust user. Imported only inside the locust subprocess: gevent's
monkey-patching must never reach the harness or pytest process.

An open loop over a shared schedule (harness.load.replay's plan): each user takes the next
request not yet taken, builds its messages at once (before it is due), waits until it is due,
sends it, and takes the next. A request is sent at its due time as long as a user is free then;
when none is, it goes out late and its record's dispatch delay says so (harness.load.users),
which marks the run invalid. The plan gives enough users for the log's own concurrency several
times over (replay.USERS_PER_IN_FLIGHT).

Each sent request gets a line in SENT_LOG: the harness's request id, the router's
(X-Request-Id, its session log's key) and the plan index, the join back to the logged line.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any, ClassVar

import gevent

from harness.load import replay
from harness.load.http import StreamClient, StreamResponse
from harness.load.prompts import chat_prompts, filler_sentences, prompt_key
from harness.load.users import SETTINGS, _StreamingUser


class _IdClient:
    """The user's StreamClient, keeping the last request's id and the router's."""

    def __init__(self, inner: StreamClient) -> None:
        self.inner = inner
        self.request_id: str | None = None
        self.router_id: str | None = None

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> StreamResponse:
        self.request_id, self.router_id = headers.get("X-Harness-Request"), None
        resp = self.inner.post(path, body, headers)
        self.router_id = resp.header("X-Request-Id")
        return resp

    def close(self) -> None:
        self.inner.close()


class ReplayUser(_StreamingUser):
    questions: ClassVar[dict[str, list[str]]] = {}
    filler = ""
    plan: replay.Plan | None = None
    start_at = 0.0  # epoch seconds: the plan's time zero
    taken = itertools.count()
    finished = 0  # requests answered or failed, for the shape
    _sent_log: Any = None

    @classmethod
    def load(cls) -> replay.Plan:
        if cls.plan is None:
            cls.plan = replay.read_plan(SETTINGS.records.with_name(replay.PLAN))
            cls.questions = {route: chat_prompts(route) for route in replay.ROUTES}
            cls.filler = replay.filler_text(filler_sentences(), SETTINGS.seed)
            cls.start_at = time.time() + replay.LEAD_S
        return cls.plan

    @classmethod
    def total(cls) -> int:
        return len(cls.plan.requests) if cls.plan is not None else 0

    def on_start(self) -> None:
        super().on_start()
        self.ids = _IdClient(self.http)
        self.http = self.ids  # type: ignore[assignment]
        self.load()
        self._take()

    def _take(self) -> None:
        """The next request of the schedule, built now; None when every one is taken."""
        cls = type(self)
        plan = self.load()
        n = next(cls.taken)
        self.request = plan.requests[n] if n < len(plan.requests) else None
        if self.request is None:
            self.due_at = time.time() + 1.0  # idle until the shape ends the run
            return
        self.messages = replay.messages_for(self.request, cls.questions, cls.filler)
        self.due_at = cls.start_at + self.request.due_s

    def body(self) -> dict[str, Any]:
        assert self.request is not None
        _, _, route, q = self.request.parts[-1]
        self.expected = self.request.route
        self.prompt_key = prompt_key(self.questions[route][q]) if route else None
        return replay.body_for(self.request, self.messages)

    def _log_sent(self, index: int) -> None:
        cls = type(self)
        if cls._sent_log is None:
            path = SETTINGS.records.with_name(replay.SENT_LOG)
            path.parent.mkdir(parents=True, exist_ok=True)
            cls._sent_log = path.open("a", buffering=1)
        line = {"request_id": self.ids.request_id, "router_id": self.ids.router_id, "index": index}
        cls._sent_log.write(json.dumps(line, separators=(",", ":")) + "\n")

    def send(self) -> None:
        if self.request is None:
            self.due_at = time.time() + 1.0  # nothing left to take: idle, not a busy loop
            return
        # locust runs a user's first task as soon as it has started, not after wait_time.
        early = self.due_at - time.time()
        if early > 0:
            gevent.sleep(early)
        super().send()
        self._log_sent(self.request.index)
        type(self).finished += 1
        self._take()
