"""Benchmark users: short streamed chats straight at HARNESS_LOAD_DIRECT_URL, closed loop."""

import locust_cpu  # noqa: F401  (records the process's CPU time over the test)

from harness.load.users import DirectUser

__all__ = ["DirectUser"]
