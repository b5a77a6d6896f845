"""StackSpec: the whole stack as the compose file declares it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.compose.services import ServiceSpec
from harness.errors import SpecError

ENGINE_ROLES = ("classifier", "primary")


@dataclass(frozen=True)
class StackSpec:
    path: Path
    project: str
    services: dict[str, ServiceSpec]
    start_order: tuple[str, ...]
    networks: tuple[str, ...]
    sha256: str
    # (service, variable or flag) of secrets written inline; names only, never values.
    inline_secrets: tuple[tuple[str, str], ...] = ()

    @property
    def engines(self) -> list[ServiceSpec]:
        """The vLLM engines, in start order."""
        return [self.services[n] for n in self.start_order if self.services[n].is_engine]

    def role(self, role: str) -> ServiceSpec:
        """The service with that role (label `harness.role`, else the conventional name)."""
        for s in self.services.values():
            if s.role == role:
                return s
        raise SpecError(f"{self.path}: no service has the label harness.role={role}")

    @property
    def classifier(self) -> ServiceSpec:
        return self.role("classifier")

    @property
    def primary(self) -> ServiceSpec:
        return self.role("primary")
