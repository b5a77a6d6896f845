"""Typed values for one compose service: ports, healthcheck, and the service itself."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from harness.compose.engine_args import EngineArgs

MASK = "***"
# TOKEN but not TOKENS: XAI_MIN_MAX_TOKENS is a budget, not a credential.
_SECRET_NAME = re.compile(r"(TOKEN(?!S)|SECRET|PASSWORD|PASSWD|API_?KEYS?|CREDENTIAL)", re.I)
_URL = re.compile(r"https?://[^\s'\"\]\),]+")
LOOPBACK = ("127.0.0.1", "::1", "localhost")
_ROLE_BY_NAME = {
    "vllm-router": "classifier",
    "vllm-primary": "primary",
    "ai-router": "router",
    "traefik": "proxy",
    "cloudflared": "tunnel",
}


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def secret_values(environ: Mapping[str, str]) -> list[str]:
    """Values of the secret-named variables in an environment: what a run must never write."""
    return [v for k, v in environ.items() if v and is_secret_name(k)]


@dataclass(frozen=True)
class PortMapping:
    """One `ports:` entry. host_ip is "" when the compose file gives none (all interfaces)."""

    container_port: int
    host_port: int | None
    host_ip: str = ""
    protocol: str = "tcp"

    @property
    def loopback_only(self) -> bool:
        return self.host_ip in LOOPBACK

    def __str__(self) -> str:
        host = f"{self.host_ip}:" if self.host_ip else ""
        published = f"{host}{self.host_port}:" if self.host_port is not None else host
        return f"{published}{self.container_port}/{self.protocol}"


@dataclass(frozen=True)
class DeviceReservation:
    """One `deploy.resources.reservations.devices` entry: the devices Docker hands the
    container, as `docker compose up` asks for them."""

    capabilities: tuple[str, ...]
    driver: str = ""
    # Docker's DeviceRequest count: -1 is every matching device (compose `count: all`, or no
    # count and no device_ids); 0 with device_ids, which then name the devices.
    count: int = -1
    device_ids: tuple[str, ...] = ()
    options: tuple[tuple[str, str], ...] = ()

    @property
    def is_gpu(self) -> bool:
        return "gpu" in self.capabilities

    def docker_gpus(self) -> str:
        """The `docker run --gpus` value that asks for the same devices."""
        if self.device_ids:
            return f"device={','.join(self.device_ids)}"
        return "all" if self.count < 0 else str(self.count)


@dataclass(frozen=True)
class HealthCheck:
    """A compose healthcheck, with durations in seconds and the URL it polls, if any."""

    test: tuple[str, ...]
    interval_s: float = 30.0
    timeout_s: float = 30.0
    retries: int = 3
    start_period_s: float = 0.0

    @property
    def url(self) -> str | None:
        for part in self.test:
            m = _URL.search(part)
            if m:
                return m.group(0)
        return None

    @property
    def startup_budget_s(self) -> float:
        """How long compose waits before it calls the service unhealthy."""
        return self.start_period_s + self.retries * (self.interval_s + self.timeout_s)


@dataclass(frozen=True)
class ServiceSpec:
    """One service of the stack as the compose file declares it."""

    name: str
    image: str
    container_name: str | None
    command: tuple[str, ...] = ()
    ports: tuple[PortMapping, ...] = ()
    # Values of secret-looking variables are masked here; the raw environment stays in the
    # compose file and `.secrets`, and only a backend that starts the service reads it.
    environment: dict[str, str] = field(default_factory=dict)
    env_files: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    networks: tuple[str, ...] = ()
    depends_on: dict[str, str] = field(default_factory=dict)
    healthcheck: HealthCheck | None = None
    gpu: bool = False
    # deploy.resources.reservations.devices, in order: the gpu target requests exactly these.
    devices: tuple[DeviceReservation, ...] = ()
    ipc: str | None = None
    shm_size: str | None = None
    engine: EngineArgs | None = None

    @property
    def role(self) -> str:
        """`classifier`, `primary`, `router`, `proxy`, `tunnel`, or `other`: the label
        `harness.role`, else the conventional service name."""
        return self.labels.get("harness.role") or _ROLE_BY_NAME.get(self.name, "other")

    @property
    def is_engine(self) -> bool:
        return self.engine is not None

    @property
    def image_tag(self) -> str:
        """The tag of the image; 'latest' when the reference names none."""
        ref = self.image.split("@", 1)[0]
        last = ref.rsplit("/", 1)[-1]
        return last.split(":", 1)[1] if ":" in last else "latest"
