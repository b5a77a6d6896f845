"""Benchmark users: short streamed chats straight at HARNESS_LOAD_DIRECT_URL, closed loop."""

from harness.load.users import DirectUser

__all__ = ["DirectUser"]
