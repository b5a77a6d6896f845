"""The Backend protocol and the Stack value every backend returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from harness.compose import StackSpec
from harness.stack.engine_memory import MemoryBreakdown
from harness.stack.kv_line import KvLine

# Why a run sends no search-routed chat; skips and load runs on such a stack say it.
PAID_SEARCH_REFUSED = (
    "the attached ai-router forwards search-routed chats to the paid xAI API; "
    "pass --harness-xai to send them (costs money)"
)


@dataclass
class ServiceHandle:
    """One running service as the harness reaches it."""

    name: str
    role: str  # classifier | primary | xai | router | other
    url: str  # base URL, without /v1
    health_path: str = "/health"
    log_path: Path | None = None
    pid: int | None = None
    container_id: str | None = None
    image_id: str | None = None  # the image the container runs (docker's sha256:... ID)
    model_name: str | None = None
    started_at: float | None = None  # time.time() when started
    healthy_at: float | None = None
    kv: KvLine | None = None
    memory: MemoryBreakdown | None = None
    command: tuple[str, ...] = ()

    @property
    def time_to_healthy_s(self) -> float | None:
        if self.started_at is None or self.healthy_at is None:
            return None
        return self.healthy_at - self.started_at


@dataclass
class Stack:
    """A stack under test: its services by name, in start order, and where its run writes."""

    target: str
    spec: StackSpec
    run_dir: Path
    services: dict[str, ServiceHandle] = field(default_factory=dict)
    # The bearer key the harness uses against the ai-router. Never printed: repr hides it.
    api_key: str = field(default="", repr=False)
    # Values the stack was given from the owner's env files (`.secrets`): every writer of the
    # run masks them.
    secrets: list[str] = field(default_factory=list, repr=False)
    notes: list[str] = field(default_factory=list)
    # Whether a chat the router would forward to xAI may be sent. False on attach without
    # --harness-xai: production's ai-router forwards search-routed chats to the paid xAI API.
    search_allowed: bool = True
    # KV pools set by a --kv-tokens what-if (engine name -> tokens), not the preflight's.
    kv_what_if: dict[str, int] = field(default_factory=dict)

    def by_role(self, role: str) -> ServiceHandle:
        for s in self.services.values():
            if s.role == role:
                return s
        raise KeyError(f"the {self.target} stack has no {role} service")

    @property
    def router(self) -> ServiceHandle:
        return self.by_role("router")

    @property
    def entry(self) -> ServiceHandle:
        """Where clients reach the ai-router: the stack's traefik where it runs one (the owner's
        clients' path), else the ai-router itself."""
        proxies = [s for s in self.services.values() if s.role == "proxy"]
        return proxies[0] if proxies else self.router

    @property
    def classifier(self) -> ServiceHandle:
        return self.by_role("classifier")

    @property
    def primary(self) -> ServiceHandle:
        return self.by_role("primary")

    @property
    def engines(self) -> list[ServiceHandle]:
        return [s for s in self.services.values() if s.role in ("classifier", "primary")]


class Backend(Protocol):
    """Brings a stack up in the compose file's start order, each service gated on health."""

    target: str

    def up(self) -> Stack: ...

    def down(self) -> None: ...
