"""The locust process's own CPU time over the test (user + system, from test_start to
test_stop), written to cpu.json beside the records: unlike the child's total, it leaves out
locust's start-up and imports, which would otherwise be spread over a short run's requests."""

from __future__ import annotations

import json
import resource
from typing import Any

from locust import events

from harness.load.users import SETTINGS

_start: list[float] = []


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@events.test_start.add_listener
def _on_start(**_: Any) -> None:
    _start.append(_cpu())


@events.test_stop.add_listener
def _on_stop(**_: Any) -> None:
    if _start:
        path = SETTINGS.records.with_name("cpu.json")
        path.write_text(json.dumps({"cpu_s": _cpu() - _start[0]}))
