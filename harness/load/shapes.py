"""Load shapes of the four profiles, in users over time. Locust runs them as LoadTestShape
classes; the user count defaults from the stack's --max-num-seqs."""

from __future__ import annotations

from locust import LoadTestShape

from harness.load.profiles import DEFAULT_DURATION_S, users_for
from harness.load.settings import LoadSettings


class ConstantShape(LoadTestShape):
    """`users` users from the start until the duration is over."""

    profile = "steady"

    def __init__(self) -> None:
        super().__init__()
        self.settings = LoadSettings.from_env()

    def tick(self) -> tuple[int, float] | None:
        duration = self.settings.duration_s or DEFAULT_DURATION_S
        if self.get_run_time() >= duration:
            return None
        n = users_for(self.profile, self.settings)
        return n, float(n)


class RampShape(ConstantShape):
    """From 1 user to the peak in equal steps over the duration."""

    profile = "ramp"

    def tick(self) -> tuple[int, float] | None:
        duration = self.settings.duration_s or DEFAULT_DURATION_S
        t = self.get_run_time()
        if t >= duration:
            return None
        peak = users_for(self.profile, self.settings)
        step = duration / peak
        return min(peak, 1 + int(t // step)), 1.0
