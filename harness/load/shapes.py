"""Load shapes of the four profiles, in users over time. Locust runs them as LoadTestShape
classes; the user count defaults from the stack's --max-num-seqs."""

from __future__ import annotations

from locust import LoadTestShape

from harness.load import users
from harness.load.profiles import DEFAULT_DURATION_S, users_for
from harness.load.settings import LoadSettings

# How long a shape may run past its duration to send its minimum number of requests. With
# locust's 300 s --stop-timeout after it, locust exits within the runner's duration + 600 s.
MAX_OVERRUN_S = 240.0


class ConstantShape(LoadTestShape):
    """`users` users from the start until the duration is over and at least
    `min_requests` requests were sent (for at most MAX_OVERRUN_S more)."""

    profile = "steady"

    def __init__(self) -> None:
        super().__init__()
        self.settings = LoadSettings.from_env()

    def sent(self) -> int:
        """Requests sent so far. In a distributed run the shape runs in the master, which sends
        none: there it counts the requests its workers have reported (every few seconds)."""
        reported = self.runner.stats.total.num_requests if self.runner is not None else 0
        return max(users.sent(), reported)

    def done(self, t: float) -> bool:
        duration = self.settings.duration_s or DEFAULT_DURATION_S
        if t < duration:
            return False
        return self.sent() >= self.settings.min_requests or t >= duration + MAX_OVERRUN_S

    def tick(self) -> tuple[int, float] | None:
        if self.done(self.get_run_time()):
            return None
        n = users_for(self.profile, self.settings)
        return n, float(n)


class RampShape(ConstantShape):
    """From 1 user to the peak in equal steps over the duration."""

    profile = "ramp"

    def tick(self) -> tuple[int, float] | None:
        duration = self.settings.duration_s or DEFAULT_DURATION_S
        t = self.get_run_time()
        if self.done(t):
            return None
        peak = users_for(self.profile, self.settings)
        step = duration / peak
        return min(peak, 1 + int(t // step)), 1.0
