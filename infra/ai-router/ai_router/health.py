"""Readiness: the router is healthy only when both engines it depends on answer /health.

xAI is deliberately not probed: it is a paid remote API, and the local route still works
without it.
"""

from __future__ import annotations

from typing import Any

import httpx

from ai_router.config import Config

# A health probe must answer well inside a container HEALTHCHECK interval.
PROBE_TIMEOUT_S = 5.0


def probe(client: httpx.Client, base_url: str, timeout: float) -> dict[str, Any]:
    try:
        resp = client.get(f"{base_url}/health", timeout=timeout)
    except httpx.TimeoutException:
        return {"ok": False, "status": None, "error": "timeout"}
    except httpx.HTTPError:
        return {"ok": False, "status": None, "error": "unreachable"}
    return {"ok": resp.status_code == 200, "status": resp.status_code}


def check(config: Config, client: httpx.Client) -> tuple[int, dict[str, Any]]:
    timeout = min(PROBE_TIMEOUT_S, config.classifier_timeout_s)
    detail = {
        "classifier": probe(client, config.classifier_url, timeout),
        "primary": probe(client, config.primary_url, timeout),
    }
    ok = all(d["ok"] for d in detail.values())
    return (200 if ok else 503), {"ok": ok, **detail}
