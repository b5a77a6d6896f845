"""The harness's load client in benchmarks/peer_vllm_bench.py: the streaming user of every load
profile, sending the prompts of one round (HARNESS_PEER_PROMPTS, one JSON string a line) straight
to the engine at HARNESS_LOAD_DIRECT_URL, each once, then ending the run."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import gevent
from locust.exception import StopUser

from harness.load import users

__all__ = ["PeerUser"]

PROMPTS = [
    json.loads(line)
    for line in Path(os.environ.get("HARNESS_PEER_PROMPTS", "/dev/null")).read_text().splitlines()
    if line.strip()
]
_next = iter(PROMPTS)
_done = 0


class PeerUser(users.DirectUser):
    def body(self) -> dict[str, Any]:
        # The body vllm bench's openai-chat backend sends, field for field.
        return {
            "model": users.SETTINGS.direct_model,
            "messages": [{"role": "user", "content": self.prompt}],
            "max_completion_tokens": users.SETTINGS.max_tokens,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    def send(self) -> None:
        global _done
        prompt = next(_next, None)
        if prompt is None:
            raise StopUser()
        self.prompt = prompt
        super().send()
        _done += 1
        if _done == len(PROMPTS):
            # Outside this greenlet: quitting kills every user's greenlet, this one included.
            gevent.spawn(self.environment.runner.quit)
