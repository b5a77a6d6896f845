"""Helpers for editing compose documents in tests."""

from __future__ import annotations

from typing import Any


def set_flag(doc: dict[str, Any], service: str, flag: str, value: str | None) -> None:
    """Set (or with None remove) one flag in a service's vLLM command list."""
    cmd: list[str] = doc["services"][service]["command"]
    if flag in cmd:
        i = cmd.index(flag)
        del cmd[i : i + 2]
    if value is not None:
        cmd += [flag, value]
