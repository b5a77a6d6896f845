"""Open-loop users and shape for `harness capacity`'s probes. Imported only inside the locust
subprocess: gevent's monkey-patching must never reach the harness process.

`OpenLoop` goes first in a user class's bases, before one of the profiles' users
(harness.load.users): each task takes the next due time from the process's one Poisson
schedule (harness.load.arrivals), sleeps until it and sends the profile's request with that
time as its intended start, so the dispatch delay is measured against the open-loop schedule.
A request still unanswered SETTINGS.request_cut_s after it went out is abandoned and recorded
as failed ("abandoned"): it has already missed its route's objectives, and waiting for it would
let one over-saturated probe run for minutes. `OpenLoopShape` holds the pool of users for the
schedule's duration, then until no request is in flight (at most the cut later), or ends it at
once when the harness asks (SETTINGS.records' sibling STOP_FILE, written when the probe is
over-saturated).
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import gevent
from locust import LoadTestShape

from harness.load import users
from harness.load.arrivals import STOP_FILE, PoissonSchedule
from harness.load.http import StreamClient
from harness.load.records import RequestRecord

ABANDONED = "abandoned: no answer within the probe's request cut"
_schedule: PoissonSchedule | None = None
_in_flight = 0
_stopped = False


def stopped() -> bool:
    """Whether the harness asked the probe to end (its stop file exists); once seen, kept."""
    global _stopped
    if not _stopped:
        _stopped = users.SETTINGS.records.with_name(STOP_FILE).exists()
    return _stopped


def schedule() -> PoissonSchedule:
    global _schedule
    if _schedule is None:
        s = users.SETTINGS
        _schedule = PoissonSchedule(
            s.rate_per_s, s.duration_s or 0.0, start=time.time(), seed=s.seed
        )
    return _schedule


def in_flight() -> int:
    return _in_flight


class OpenLoop:
    """The open-loop part of a user class; the profile's user class supplies the request."""

    idle = False

    def wait_time(self) -> float:
        return 0.5 if self.idle else 0.0

    def send(self) -> None:
        global _in_flight
        due = None if stopped() else schedule().next_due()
        if due is None:
            self.idle = True  # the schedule is over; the shape ends the run
            return
        gevent.sleep(max(0.0, due - time.time()))
        if stopped():
            # Asked to end while waiting for its due time: locust lets a stopping user finish
            # its task (--stop-timeout), and an arrival after the stop is none of the probe's.
            self.idle = True
            return
        me: Any = self
        me.due_at = due
        _in_flight += 1
        cut = gevent.Timeout(users.SETTINGS.request_cut_s or None)
        cut.start()
        sent_at = time.time()
        try:
            super().send()  # type: ignore[misc]
        except gevent.Timeout as t:
            if t is not cut:
                raise
            self._abandoned(me, due, sent_at)
        finally:
            cut.close()
            _in_flight -= 1

    def _abandoned(self, me: Any, due: float, sent_at: float) -> None:
        rec = RequestRecord(type(me).__name__, me.target, due, sent_at, 0, False)
        rec.dispatch_delay_s = round(sent_at - due, 6)
        rec.e2e_s = time.time() - sent_at
        rec.error = ABANDONED
        rec.expected_route, rec.prompt_key = me.expected, me.prompt_key
        users.writer(me.environment).write(rec)
        # The connection stopped mid-answer: a fresh one for the next request.
        parts = urlsplit(me.url())
        me.http.close()
        me.http = StreamClient(f"{parts.scheme}://{parts.netloc}", read_timeout_s=900.0)


class OpenLoopShape(LoadTestShape):
    """The pool of users (SETTINGS.users) until the schedule is over and nothing is in flight,
    or the harness's stop file appears."""

    abstract = True

    def tick(self) -> tuple[int, float] | None:
        s = users.SETTINGS
        t = self.get_run_time()
        arrivals_end = (s.duration_s or 0.0) + 2.0
        if stopped() or (t >= arrivals_end and _in_flight == 0):
            return None
        if t >= arrivals_end + (s.request_cut_s or 60.0) + 5.0:
            return None
        n = s.users or 1
        return n, float(n)
