"""Load shapes of the four profiles, in users over time. Locust runs them as LoadTestShape
classes; the user count defaults from the stack's --max-num-seqs."""

from __future__ import annotations

from locust import LoadTestShape
from locust.runners import MasterRunner

from harness.load import users
from harness.load.profiles import DEFAULT_DURATION_S, users_for
from harness.load.settings import LoadSettings

# How long a shape may run past its duration to send its minimum number of requests. With
# locust's 300 s --stop-timeout after it, locust exits within the runner's duration + 600 s.
MAX_OVERRUN_S = 240.0
# How long a distributed run's master waits, once the shape is done, for its workers to finish
# the requests they have in flight (see ConstantShape.end).
WIND_DOWN_S = 120.0


class ConstantShape(LoadTestShape):
    """`users` users from the start until the duration is over and at least
    `min_requests` requests were sent (for at most MAX_OVERRUN_S more)."""

    # Locust runs the first shape class a locustfile's namespace holds, and an imported base
    # counts: only the profiles' own subclasses (locust's metaclass makes them concrete) may run.
    abstract = True
    profile = "steady"

    def __init__(self) -> None:
        super().__init__()
        self.settings = LoadSettings.from_env()
        self._wind_down_from: float | None = None

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

    def end(self, t: float) -> tuple[int, float] | None:
        """What the shape returns once it is done. In one process: None, and locust stops the
        users, each finishing its request and writing its record. In a distributed run None
        makes the master quit at once, and the records of the requests its workers still have
        in flight would reach a master that no longer listens. So the master first scales its
        workers to zero users: each user finishes its request, and its worker sends the record
        before it reports zero users. The run ends when they report none, or after
        WIND_DOWN_S."""
        runner = self.runner
        if not isinstance(runner, MasterRunner):
            return None
        if self._wind_down_from is None:
            self._wind_down_from = t
        if runner.user_count > 0 and t - self._wind_down_from < WIND_DOWN_S:
            return 0, 100.0
        return None

    def tick(self) -> tuple[int, float] | None:
        t = self.get_run_time()
        if self.done(t):
            return self.end(t)
        n = users_for(self.profile, self.settings)
        return n, float(n)


class RampShape(ConstantShape):
    """From 1 user to the peak in equal steps over the duration."""

    profile = "ramp"

    def tick(self) -> tuple[int, float] | None:
        duration = self.settings.duration_s or DEFAULT_DURATION_S
        t = self.get_run_time()
        if self.done(t):
            return self.end(t)
        peak = users_for(self.profile, self.settings)
        step = duration / peak
        return min(peak, 1 + int(t // step)), 1.0
