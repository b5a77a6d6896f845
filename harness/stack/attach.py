"""The `attach` target: a stack that is already running, reached by URLs from the config.

    [targets.attach]
    router_url = "http://127.0.0.1:8080"
    classifier_url = "http://127.0.0.1:8001"
    primary_url = "http://127.0.0.1:8002"

The router's key comes from HARNESS_ROUTER_API_KEY (never from a file in the repo).
Nothing is started or stopped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from harness.config import Settings
from harness.errors import ConfigError
from harness.spec import StackSpec
from harness.stack.base import ServiceHandle, Stack
from harness.stack.health import wait_healthy


@dataclass
class AttachBackend:
    spec: StackSpec
    settings: Settings
    run_dir: Path
    target: str = "attach"

    def up(self) -> Stack:
        key = os.environ.get("HARNESS_ROUTER_API_KEY", "")
        if not key:
            raise ConfigError("HARNESS_ROUTER_API_KEY is not set: attach needs the router's key")
        stack = Stack(self.target, self.spec, self.run_dir, api_key=key)
        defaults = {
            "classifier": "http://127.0.0.1:8001",
            "primary": "http://127.0.0.1:8002",
            "router": "http://127.0.0.1:8080",
        }
        for role, default in defaults.items():
            url = self.settings.get(f"targets.attach.{role}_url", str, default).rstrip("/")
            svc = self.spec.role(role)
            model = svc.engine.name if svc.engine else None
            handle = ServiceHandle(svc.name, role, url, model_name=model)
            handle.healthy_at = wait_healthy(svc.name, url + handle.health_path, timeout_s=10)
            stack.services[svc.name] = handle
        return stack

    def down(self) -> None:
        """Attached stacks belong to their owner: nothing to stop."""
