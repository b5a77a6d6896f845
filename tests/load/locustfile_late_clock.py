"""steady, with a client whose clock starts late: each request's start is read
HARNESS_TEST_LATE_START_S seconds (default 0.1) after its true start, so every TTFT reads that
much short. Used only to show that reconciliation against the engine catches such a client.
"""

import os

from harness.load import users
from harness.load.shapes import ConstantShape

__all__ = ["LateClockChatUser", "SteadyShape"]

LATE_S = float(os.environ.get("HARNESS_TEST_LATE_START_S", "0.1"))


class LateClockChatUser(users.ChatUser):
    def started(self) -> float:
        return self.clock() + LATE_S


class SteadyShape(ConstantShape):
    profile = "steady"
