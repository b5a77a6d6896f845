"""What `harness up` leaves for `harness status` and `harness down`: the running twin's process
groups and URLs. Kept in the user's state directory with mode 0600, never under reports/,
because it holds the router key the harness generated."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from harness.compose import StackSpec
from harness.stack.base import ServiceHandle, Stack


def state_path() -> Path:
    override = os.environ.get("HARNESS_STATE_DIR")
    base = Path(override) if override else Path(platformdirs.user_state_dir("ai-router-harness"))
    return base / "stack.json"


def state_doc(stack: Stack, run_id: str | None = None) -> dict[str, Any]:
    """What the state file holds for `stack` (the router's key included)."""
    return {
        "target": stack.target,
        "run_dir": str(stack.run_dir),
        "compose": str(stack.spec.path),
        "api_key": stack.api_key,
        "run_id": run_id,
        "kv_what_if": dict(stack.kv_what_if),
        "services": [
            {"name": s.name, "role": s.role, "url": s.url, "pid": s.pid, "model": s.model_name}
            for s in stack.services.values()
        ],
    }


def save(stack: Stack, path: Path | None = None, run_id: str | None = None) -> Path:
    """`run_id`: the containers run whose labelled containers `harness down` removes."""
    path = path or state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = state_doc(stack, run_id)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh, indent=2)
    return path


def load(path: Path | None = None) -> dict[str, Any] | None:
    path = path or state_path()
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except (OSError, json.JSONDecodeError):
        return None


def clear(path: Path | None = None) -> None:
    (path or state_path()).unlink(missing_ok=True)


def twin_session_log(router_url: str, path: Path | None = None) -> Path | None:
    """The router's session log of the twin that `harness up` started, when `router_url` is
    that twin's router or its traefik (an attach run against it):
    `<run_dir>/logs/<router>-session.jsonl`, where the process twin's router writes it."""
    doc = load(path)
    if doc is None or doc.get("target") != "twin":
        return None
    want = router_url.rstrip("/")
    services = doc.get("services", [])
    # The URL may be the router's own or that of the traefik in front of it.
    if any(s.get("role") in ("router", "proxy") and str(s.get("url", "")).rstrip("/") == want
           for s in services):  # fmt: skip
        for svc in services:
            if svc.get("role") == "router":
                return Path(doc["run_dir"]) / "logs" / f"{svc['name']}-session.jsonl"
    return None


@dataclass
class RecordedBackend:
    """The stack `harness up` recorded, measured as it runs: nothing is started, nothing is
    stopped (`harness down` does that). Each service must answer its health check first."""

    doc: dict[str, Any]
    spec: StackSpec
    run_dir: Path
    health_timeout_s: float = 10.0
    target: str = ""

    def __post_init__(self) -> None:
        self.target = str(self.doc["target"])

    def up(self) -> Stack:
        from harness.stack.health import wait_healthy

        # A state file written without the key (one a test wrote, so that no file holds it)
        # leaves it to HARNESS_ROUTER_API_KEY, as attach reads it.
        key = self.doc.get("api_key") or os.environ.get("HARNESS_ROUTER_API_KEY", "")
        stack = Stack(self.target, self.spec, self.run_dir, api_key=key)
        stack.kv_what_if = {str(k): int(v) for k, v in (self.doc.get("kv_what_if") or {}).items()}
        for svc in self.doc["services"]:
            handle = ServiceHandle(
                svc["name"], svc["role"], svc["url"], pid=svc.get("pid"),
                model_name=svc.get("model"),
            )  # fmt: skip
            log = Path(self.doc["run_dir"]) / "logs" / f"{handle.name}.log"
            handle.log_path = log if log.is_file() else None
            if svc["role"] in ("classifier", "primary", "router", "proxy"):
                handle.healthy_at = wait_healthy(
                    handle.name, handle.url + handle.health_path, timeout_s=self.health_timeout_s
                )
            stack.services[handle.name] = handle
        stack.notes.append(
            f"the {self.target} stack `harness up` started (run dir {self.doc['run_dir']}): "
            "measured as it runs, left up"
        )
        return stack

    def down(self) -> None:
        """The stack belongs to `harness up`: `harness down` stops it."""
