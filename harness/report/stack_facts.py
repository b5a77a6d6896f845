"""What a run record says about each service of a running stack."""

from __future__ import annotations

from typing import Any

from harness.stack.base import Stack


def stack_facts(stack: Stack) -> dict[str, Any]:
    """Per service: role, URL, model, time to healthy, and the engine's startup KV line."""
    out: dict[str, Any] = {}
    for s in stack.services.values():
        out[s.name] = {
            "role": s.role,
            "url": s.url,
            "model": s.model_name,
            "time_to_healthy_s": None
            if s.time_to_healthy_s is None
            else round(s.time_to_healthy_s, 2),
            "kv": None
            if s.kv is None
            else {
                "device": s.kv.device,
                "tokens": s.kv.tokens,
                "max_model_len": s.kv.max_model_len,
                "max_concurrency": s.kv.max_concurrency,
                "available_gib": s.kv.available_gib,
            },
            "log": str(s.log_path) if s.log_path else None,
        }
    return out
