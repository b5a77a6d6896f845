"""The harness's capacity probe straight at one engine, for benchmarks/capacity_vs_serve_sla.py:
the open-loop users and shape of `harness capacity`'s probes (harness.load.open_loop: one
Poisson schedule at HARNESS_LOAD_RATE_PER_S for HARNESS_LOAD_DURATION_S, a pool of idle users
taking the arrivals, the request cut) sending, to HARNESS_LOAD_DIRECT_URL, the body vLLM
bench's openai-chat backend sends, with the next prompt of prompts.jsonl (one JSON string a
line, beside the run's requests.jsonl)."""

from __future__ import annotations

import itertools
import json
from typing import Any

# Modules, not classes: locust runs every user and shape class a locustfile's namespace holds.
from harness.load import open_loop, users

__all__ = ["DirectCapacityShape", "DirectCapacityUser"]

PROMPTS = [
    json.loads(line)
    for line in users.SETTINGS.records.with_name("prompts.jsonl").read_text().splitlines()
    if line.strip()
]
# The benchmark writes more prompts than the schedule can hand out; a reused one would be served
# from the prefix cache.
_next = itertools.cycle(PROMPTS)


class DirectCapacityUser(open_loop.OpenLoop, users.DirectUser):
    def body(self) -> dict[str, Any]:
        return {
            "model": users.SETTINGS.direct_model,
            "messages": [{"role": "user", "content": next(_next)}],
            "max_completion_tokens": users.SETTINGS.max_tokens,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }


class DirectCapacityShape(open_loop.OpenLoopShape):
    pass
