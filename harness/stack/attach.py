"""The `attach` target: a stack that is already running, reached by URLs from the config.

    [targets.attach]
    router_url = "http://127.0.0.1:8080"
    classifier_url = "http://127.0.0.1:8001"
    primary_url = "http://127.0.0.1:8002"

The router's key comes from HARNESS_ROUTER_API_KEY (never from a file in the repo).
Nothing is started or stopped.

Production's ai-router forwards search-routed chats to the real xAI API, which costs money: a run
without `real_xai` (`--harness-xai`) sends none (`Stack.search_allowed`), unless the router is
the twin `harness up` started, whose xAI is the fake.

Where an engine runs on this machine, its handle carries the container (the compose project's,
by its labels) or the process (the one listening on its port) behind it, so that NVML's GPU
processes can be told apart per engine; the stack's notes say what was found.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from harness.compose import StackSpec
from harness.config import Settings
from harness.errors import ConfigError
from harness.stack import state
from harness.stack.base import PAID_SEARCH_REFUSED, ServiceHandle, Stack
from harness.stack.discover import discover, docker_or_none
from harness.stack.health import wait_healthy


@dataclass
class AttachBackend:
    spec: StackSpec
    settings: Settings
    run_dir: Path
    target: str = "attach"
    real_xai: bool = False  # search-routed chats may reach the paid xAI API (--harness-xai)

    def up(self) -> Stack:
        key = os.environ.get("HARNESS_ROUTER_API_KEY", "")
        if not key:
            raise ConfigError("HARNESS_ROUTER_API_KEY is not set: attach needs the router's key")
        stack = Stack(self.target, self.spec, self.run_dir, api_key=key)
        urls = self.settings.typed.target("attach")
        for role in ("classifier", "primary", "router"):
            url = urls.url(role)
            svc = self.spec.role(role)
            model = svc.engine.name if svc.engine else None
            handle = ServiceHandle(svc.name, role, url, model_name=model)
            handle.healthy_at = wait_healthy(svc.name, url + handle.health_path, timeout_s=10)
            stack.services[svc.name] = handle
        locate(stack)
        session = state.twin_session_log(stack.router.url)
        if session is not None:
            # The router is the twin's that `harness up` started: its logs are on this machine.
            stack.router.log_path = session.with_name(f"{stack.router.name}.log")
            stack.notes.append(f"attach: the router is the twin `harness up` started: {session}")
        stack.search_allowed = self.real_xai or session is not None
        if not stack.search_allowed:
            stack.notes.append(f"attach: no search-routed chat is sent: {PAID_SEARCH_REFUSED}")
        return stack

    def down(self) -> None:
        """Attached stacks belong to their owner: nothing to stop."""


def locate(stack: Stack) -> None:
    """Fill in each engine handle's container id or PID where this machine runs the engine.
    The router's stays empty: a PID there would make load runs watch processes the harness
    did not start."""
    client = docker_or_none()
    try:
        for handle in stack.engines:
            found = discover(handle.name, handle.url, stack.spec.project, client)
            if found is None:
                stack.notes.append(f"attach: {handle.name}: no process found for {handle.url}")
                continue
            handle.container_id, handle.pid = found.container_id, found.pid
            stack.notes.append(f"attach: {handle.name}: {found.how}")
    finally:
        if client is not None:
            client.close()
