"""What a run record says about the stack that ran: per service its role, URL, model, start-up
facts and image ID; per engine the vLLM version it reports (`GET /version`); on gpu and attach
the owner's cloudflared, its token and its origin (`harness doctor`'s tunnel checks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from harness.config import Settings
from harness.stack.base import Stack

# /version answers at once on a healthy engine; a hung one must not hold up the run.
VERSION_TIMEOUT_S = 5.0
# The targets whose tunnel is the owner's; the twins name it as a substitution instead.
TUNNEL_TARGETS = ("gpu", "attach")
NOT_CHECKED = "not checked: substitution tunnel"


def preflight_section(compose: Path, settings: Settings, target: str) -> dict[str, Any]:
    """The record's preflight (`harness check`'s result): on gpu and attach for the card NVML
    reports, as the gpu backend and the KV test predict; elsewhere for the configured card."""
    from harness.telemetry.nvml import total_memory_or_none
    from harness.vram.check import run_check

    total = total_memory_or_none() if target in ("gpu", "attach") else None
    return run_check(compose, settings, nvml_total=total).to_dict()


def stack_section(stack: Stack, *, transport: httpx.BaseTransport | None = None) -> dict[str, Any]:
    """The record's `stack` section after bring-up: compose digest, engine argv, image
    references and IDs, engine versions, per-service facts, notes."""
    spec = stack.spec
    tunnel = tunnel_section(stack)
    return {
        "compose_sha256": spec.sha256,
        "engine_args": {e.name: e.engine.to_argv() for e in spec.engines if e.engine is not None},
        "images": {n: s.image for n, s in spec.services.items()},
        # Container targets only: the docker image ID each service's container runs.
        "image_ids": {s.name: s.image_id for s in stack.services.values() if s.image_id},
        "versions": {
            e.name: engine_version(e.url, transport=transport) for e in stack.engines if e.url
        },
        "services": stack_facts(stack),
        "tunnel": tunnel,
        "notes": [*stack.notes, *tunnel_notes(tunnel)],
    }


def tunnel_section(stack: Stack) -> dict[str, Any]:
    """cloudflared's token and origin on gpu and attach, read where the stack runs (a stack
    elsewhere, or no Docker here, reads as WARN: not known); on the twins, not checked."""
    if stack.target not in TUNNEL_TARGETS:
        return {"checked": False, "checks": [], "detail": NOT_CHECKED}
    from harness.stack.discover import docker_or_none
    from harness.stack.tunnel_check import tunnel_checks

    # A gpu run that brought its own edge checks its own cloudflared container.
    own = next((s.container_id for s in stack.services.values() if s.role == "tunnel"), None)
    client = docker_or_none()
    try:
        checks = [
            {"name": c.name, "status": c.status, "detail": c.detail}
            for c in tunnel_checks(stack.spec, client, own)
        ]
    except OSError as exc:  # .secrets or a mounted config.yml unreadable
        checks = [{"name": "tunnel", "status": "FAIL", "detail": f"{type(exc).__name__}: {exc}"}]
    finally:
        if client is not None:
            client.close()
    return {"checked": True, "checks": checks, "detail": ""}


def tunnel_notes(tunnel: dict[str, Any]) -> list[str]:
    if not tunnel["checked"]:
        return [f"tunnel: {tunnel['detail']}"]
    return [f"{c['name']} {c['status']}: {c['detail']}" for c in tunnel["checks"]]


def engine_version(
    url: str, *, timeout_s: float = VERSION_TIMEOUT_S, transport: httpx.BaseTransport | None = None
) -> dict[str, str | None]:
    """`GET /version` of a vLLM engine: {"version": "0.32.0", "error": None}, or no version and
    the reason (an older server, a proxy in front, a timeout)."""
    where = f"GET {url.rstrip('/')}/version"
    try:
        with httpx.Client(timeout=timeout_s, transport=transport) as client:
            response = client.get(url.rstrip("/") + "/version")
        response.raise_for_status()
        version = response.json().get("version")
    except httpx.HTTPStatusError as exc:
        return {"version": None, "error": f"{where}: HTTP {exc.response.status_code}"}
    except httpx.HTTPError as exc:
        return {"version": None, "error": f"{where}: {type(exc).__name__}: {exc}"}
    except (ValueError, AttributeError):  # not JSON, or JSON but not an object
        return {"version": None, "error": f"{where}: the answer is not a JSON object"}
    if not isinstance(version, str) or not version:
        return {"version": None, "error": f"{where}: the answer has no version"}
    return {"version": version, "error": None}


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
