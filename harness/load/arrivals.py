"""Open-loop arrivals: when each request of a capacity probe is due, whatever the answers take.

A closed loop (the profiles' users) sends its next request when the previous answer ends, so a
slow stack receives less load and never shows its limit. Here the requests of a probe arrive as
a Poisson process at a fixed rate: gaps drawn from an exponential distribution, one shared
schedule for every user of the locust process. A pool of idle users takes the arrivals, one
each, so a request goes out on time as long as a user is free; when none is, it goes out late,
and its dispatch delay says so (the run is then invalid, harness.load.stats.client_behind).
No locust import: the harness process sizes the pool with these functions too.
"""

from __future__ import annotations

import math
import random
import threading

# The most users one probe's locust process holds: an idle user costs a greenlet and a socket,
# and a probe that needs more requests in flight at once than this is far past the knee.
MAX_POOL = 400
# The first arrival is due this long after the schedule starts, so that the pool is spawned.
LEAD_S = 1.0
# Written next to a probe's requests.jsonl by the harness to end the probe at once.
STOP_FILE = "stop-probe"


def pool_size(rate_per_s: float, duration_s: float, cap: int = MAX_POOL) -> int:
    """Users enough that every arrival of the probe finds one free even if no answer came back
    before its end: the expected count plus four standard deviations, at most `cap`."""
    if rate_per_s <= 0 or duration_s <= 0:
        raise ValueError("an open-loop probe needs a rate and a duration above 0")
    mean = rate_per_s * duration_s
    return max(1, min(cap, math.ceil(mean + 4 * math.sqrt(mean) + 1)))


class PoissonSchedule:
    """Due times (epoch seconds) of a Poisson process at `rate_per_s`, from `start` + LEAD_S
    for `duration_s`; None once past the end. Thread- and greenlet-safe: each due time is
    handed out once."""

    def __init__(self, rate_per_s: float, duration_s: float, start: float, seed: int = 1) -> None:
        if rate_per_s <= 0 or duration_s <= 0:
            raise ValueError("an open-loop probe needs a rate and a duration above 0")
        self.rate = rate_per_s
        self.begin = start + LEAD_S
        self.end = self.begin + duration_s
        self._rng = random.Random(seed)
        self._next = self.begin + self._rng.expovariate(rate_per_s)
        self._lock = threading.Lock()
        self.handed = 0

    def next_due(self) -> float | None:
        with self._lock:
            due = self._next
            if due >= self.end:
                return None
            self._next = due + self._rng.expovariate(self.rate)
            self.handed += 1
            return due
