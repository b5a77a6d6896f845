"""What one container of a harness run looks like: a pure mapping from the StackSpec.

`ContainerPlan` is the value; `gpu_plans` derives the real stack's plans from the compose file,
and `docker_kwargs` turns a plan into the keyword arguments of one `with_kwargs` call (one call,
because testcontainers' `with_kwargs` replaces what an earlier call set).

Names: every container, network and per-run volume is named `harness-<run id>-<name>` and labelled
`ai-router-harness=1` and `ai-router-harness.run=<run id>`, so a run never collides with the
production containers and `sweep()` finds whatever a run left behind. Inside the run's network each
container also answers to its compose service name and container_name, so the compose file's
upstream URLs (`http://vllm-router:8000`) work unchanged.

Secrets: environment values come from the compose file (interpolated from the environment and the
env files), and from its env files (`.secrets`). Every env-file key and every secret-looking name
is a secret: `render()` masks it, and nothing here logs a value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from secrets import token_hex
from typing import Any
from urllib.parse import urlparse

import yaml

from harness.compose import DeviceReservation, ServiceSpec, StackSpec
from harness.compose.env_file import service_env_files
from harness.compose.services import MASK, is_secret_name
from harness.errors import ConfigError

LABEL = "ai-router-harness"
RUN_LABEL = "ai-router-harness.run"
SERVICE_LABEL = "ai-router-harness.service"
ORDER_LABEL = "ai-router-harness.order"
HOST_IP = "127.0.0.1"
XAI_SERVICE = "fake-xai"
XAI_PORT = 8000
FAKE_XAI_ROOT = "/opt/ai-router-harness"
ENGINE_ROLES = ("classifier", "primary")
EDGE_ROLES = ("proxy", "tunnel")
# Named volumes whose name says "cache" keep the compose project's own volume (for the HF cache:
# tens of GB of weights that must not be downloaded again per run); all others are per run.
_SHARED_VOLUME = re.compile(r"cache", re.I)
_INTERP = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_]\w*)")
_DEFAULT_HEALTH = {
    "classifier": (8000, "/health"),
    "primary": (8000, "/health"),
    "router": (8080, "/health"),
}


@dataclass(frozen=True)
class Mount:
    source: str  # an absolute host path (bind) or a volume name
    target: str
    read_only: bool = False

    @property
    def is_bind(self) -> bool:
        return self.source.startswith("/")

    def __str__(self) -> str:
        return f"{self.source}:{self.target}:{'ro' if self.read_only else 'rw'}"


@dataclass(frozen=True)
class ContainerPlan:
    service: str
    role: str
    name: str  # the docker container name
    image: str
    command: tuple[str, ...]
    # Real values, secrets included: repr hides them; render() masks them.
    environment: Mapping[str, str] = field(default_factory=dict, repr=False)
    secret_keys: frozenset[str] = frozenset()
    mounts: tuple[Mount, ...] = ()
    ports: tuple[int, ...] = ()  # container ports, each published on 127.0.0.1, ephemeral
    health_port: int | None = None  # None: running is ready (a service without a health URL)
    health_path: str = "/health"
    startup_budget_s: float = 60.0
    aliases: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    gpu: bool = False
    # The compose file's device reservations; none: every GPU (a plan made outside a compose).
    devices: tuple[DeviceReservation, ...] = ()
    ipc_mode: str | None = None
    shm_size: str | None = None
    working_dir: str | None = None
    model_name: str | None = None
    run_volumes: tuple[str, ...] = ()  # volumes this run creates and removes
    build_context: str | None = None  # compose `build:`: how to make the image when it is absent
    entrypoint: tuple[str, ...] | None = None  # None: the image's own

    @property
    def secret_values(self) -> tuple[str, ...]:
        """The values to scrub from anything printed or logged (short ones mask nothing real)."""
        return tuple(v for k, v in self.environment.items() if k in self.secret_keys and len(v) > 3)

    def masked_environment(self) -> dict[str, str]:
        return {k: MASK if k in self.secret_keys and v else v for k, v in self.environment.items()}

    def render(self) -> str:
        """A `docker run`-like line for logs and progress, secrets masked."""
        parts = ["docker run", f"--name {self.name}"]
        parts += [f"--network-alias {a}" for a in self.aliases]
        parts += [f"-p {HOST_IP}::{p}" for p in self.ports]
        parts += [f"-v {m}" for m in self.mounts]
        parts += [f"-e {k}={v}" for k, v in sorted(self.masked_environment().items())]
        if self.ipc_mode:
            parts.append(f"--ipc {self.ipc_mode}")
        if self.shm_size:
            parts.append(f"--shm-size {self.shm_size}")
        if self.gpu:
            parts += [f"--gpus {d.docker_gpus()}" for d in self.devices] or ["--gpus all"]
        if self.working_dir:
            parts.append(f"-w {self.working_dir}")
        if self.entrypoint:
            parts.append(f"--entrypoint {self.entrypoint[0]}")
        parts += [self.image, *(self.entrypoint or ())[1:], *self.command]
        return mask_text(" ".join(parts), self.secret_values)


def mask_text(text: str, secrets: tuple[str, ...]) -> str:
    for value in sorted(secrets, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


# -- names and labels -------------------------------------------------------------------------


def prefix(run_id: str) -> str:
    return f"harness-{run_id}-"


def container_name(run_id: str, svc: ServiceSpec | str) -> str:
    base = svc if isinstance(svc, str) else (svc.container_name or svc.name)
    return prefix(run_id) + base


def network_name(run_id: str, spec: StackSpec) -> str:
    return prefix(run_id) + (spec.networks[0] if spec.networks else "ai-network")


def run_labels(run_id: str) -> dict[str, str]:
    return {LABEL: "1", RUN_LABEL: run_id}


# -- environment ------------------------------------------------------------------------------


def interpolate(value: str, lookup: Mapping[str, str], where: str) -> str:
    """Compose interpolation: $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, $$."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3) or ""
        have = lookup.get(name)
        empty = have is None or (have == "" and op is not None and op.startswith(":"))
        if op in (":-", "-") and empty:
            return arg
        if op in (":?", "?") and empty:
            raise ConfigError(f"{where}: ${{{name}}} is required: {arg or 'not set'}")
        return have or ""

    return _INTERP.sub(sub, value)


def raw_service(spec: StackSpec, service: str) -> dict[str, Any]:
    """The service as written in the compose file, for what the StackSpec leaves out."""
    try:
        doc = yaml.safe_load(spec.path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
    body = (doc.get("services") or {}).get(service)
    return body if isinstance(body, dict) else {}


def raw_environment(spec: StackSpec, service: str) -> dict[str, str]:
    """The service's environment as written in the compose file: the StackSpec masks inline
    secrets, and only a backend that starts the service may read them."""
    env = raw_service(spec, service).get("environment") or {}
    if isinstance(env, list):
        return {k: v for k, _, v in (str(item).partition("=") for item in env)}
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def service_environment(
    spec: StackSpec,
    svc: ServiceSpec,
    environ: Mapping[str, str] | None = None,
    env_files_required: bool = True,
) -> tuple[dict[str, str], frozenset[str]]:
    """(environment, secret keys) as compose would hand them to the container."""
    environ = os.environ if environ is None else environ
    from_files = service_env_files(spec, svc, required=env_files_required)
    raw = raw_environment(spec, svc.name) if MASK in svc.environment.values() else {}
    lookup = {**from_files, **environ}
    where = f"{spec.path}: service {svc.name!r}"
    env = dict(from_files)
    for key, value in svc.environment.items():
        env[key] = interpolate(raw.get(key, value) if value == MASK else value, lookup, where)
    secrets = frozenset(k for k in env if k in from_files or is_secret_name(k))
    return env, secrets


# -- the GPU stack ----------------------------------------------------------------------------


def health_of(svc: ServiceSpec) -> tuple[int | None, str]:
    """The container port and path the compose healthcheck polls."""
    url = svc.healthcheck.url if svc.healthcheck else None
    if url:
        u = urlparse(url)
        return u.port or 80, u.path or "/"
    return _DEFAULT_HEALTH.get(svc.role, (None, "/health"))


def published_ports(svc: ServiceSpec, health_port: int | None) -> tuple[int, ...]:
    """The compose TCP ports plus the health port: the harness must reach every service it
    gates on, also one that production reaches only through traefik (the ai-router)."""
    ports = [p.container_port for p in svc.ports if p.protocol == "tcp"]
    return tuple(dict.fromkeys([*ports, *([health_port] if health_port else [])]))


def build_context(spec: StackSpec, service: str) -> str | None:
    build = raw_service(spec, service).get("build")
    context = build.get("context") if isinstance(build, dict) else build
    if not isinstance(context, str) or not context:
        return None
    return str((spec.path.resolve().parent / context).resolve())


def startup_budget(svc: ServiceSpec, default: float = 60.0) -> float:
    return svc.healthcheck.startup_budget_s if svc.healthcheck else default


def volume_mounts(spec: StackSpec, svc: ServiceSpec, run_id: str) -> tuple[list[Mount], list[str]]:
    """(mounts, per-run volumes to create). Relative binds resolve against the compose file."""
    mounts: list[Mount] = []
    created: list[str] = []
    for entry in svc.volumes:
        parts = entry.split(":")
        if len(parts) < 2:
            continue  # an anonymous volume: docker makes and removes it with the container
        source, target = parts[0], parts[1]
        ro = len(parts) > 2 and "ro" in parts[2].split(",")
        if source.startswith((".", "/", "~")):
            path = Path(source).expanduser()
            path = path if path.is_absolute() else spec.path.resolve().parent / path
            mounts.append(Mount(str(path.resolve()), target, ro))
        elif _SHARED_VOLUME.search(source):
            mounts.append(Mount(f"{spec.project}_{source}", target, ro))
        else:
            name = prefix(run_id) + source
            created.append(name)
            mounts.append(Mount(name, target, ro))
    return mounts, created


def gpu_plan(
    spec: StackSpec,
    svc: ServiceSpec,
    run_id: str,
    order: int,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
    env_files_required: bool = True,
) -> ContainerPlan:
    env, secret_keys = service_environment(spec, svc, environ, env_files_required)
    env.update(overrides or {})
    secret_keys |= {k for k in overrides or {} if is_secret_name(k)}
    port, path = health_of(svc)
    mounts, created = volume_mounts(spec, svc, run_id)
    labels = {**run_labels(run_id), SERVICE_LABEL: svc.name, ORDER_LABEL: str(order)}
    return ContainerPlan(
        service=svc.name,
        role=svc.role,
        name=container_name(run_id, svc),
        image=svc.image,
        command=svc.command,
        environment=env,
        secret_keys=frozenset(secret_keys),
        mounts=tuple(mounts),
        ports=published_ports(svc, port),
        health_port=port,
        health_path=path,
        startup_budget_s=startup_budget(svc),
        aliases=tuple(dict.fromkeys(a for a in (svc.name, svc.container_name) if a)),
        labels=labels,
        gpu=svc.gpu,
        devices=svc.devices,
        ipc_mode=svc.ipc,
        shm_size=svc.shm_size,
        model_name=svc.engine.name if svc.engine else None,
        run_volumes=tuple(created),
        build_context=build_context(spec, svc.name),
    )


def gpu_service_order(spec: StackSpec, include_edge: bool = False) -> list[str]:
    """The compose start order: engines, ai-router, then traefik/cloudflared when asked."""
    keep = (*ENGINE_ROLES, "router", *(EDGE_ROLES if include_edge else ()))
    return [n for n in spec.start_order if spec.services[n].role in keep]


def gpu_plans(
    spec: StackSpec,
    run_id: str,
    api_key: str,
    *,
    include_edge: bool = False,
    environ: Mapping[str, str] | None = None,
    real_xai: bool = False,
    env_files_required: bool = True,
) -> list[ContainerPlan]:
    """Every container of the real stack, in start order. The ai-router accepts the harness's
    generated key instead of the owner's keys from `.secrets`, and talks to the fake xAI, which
    starts just before it, unless `real_xai` (paid calls: `--harness-xai`)."""
    plans: list[ContainerPlan] = []
    for name in gpu_service_order(spec, include_edge):
        svc = spec.services[name]
        overrides = {"ROUTER_API_KEYS": api_key} if svc.role == "router" else {}
        if svc.role == "router" and not real_xai:
            xai = fake_xai_plan(spec, svc, run_id, len(plans))
            plans.append(xai)
            # Never the owner's key: the fake needs one, and only to check that one is sent.
            overrides.update(
                XAI_BASE_URL=f"http://{XAI_SERVICE}:{XAI_PORT}/v1",
                XAI_API_KEY="fake-xai-" + token_hex(8),
            )
        plans.append(
            gpu_plan(spec, svc, run_id, len(plans), environ, overrides, env_files_required)
        )
    return plans


def fake_xai_plan(spec: StackSpec, router: ServiceSpec, run_id: str, order: int) -> ContainerPlan:
    """The fake xAI as a container of the ai-router's image (it has Python; the fake needs only
    the standard library), running this harness's own package, mounted read-only."""
    package = Path(__file__).resolve().parents[1]  # .../harness
    labels = {**run_labels(run_id), SERVICE_LABEL: XAI_SERVICE, ORDER_LABEL: str(order)}
    return ContainerPlan(
        service=XAI_SERVICE,
        role="xai",
        name=container_name(run_id, XAI_SERVICE),
        image=router.image,
        entrypoint=("python",),
        command=("-m", "harness.fakes.xai", "--host", "0.0.0.0", "--port", str(XAI_PORT)),
        environment={
            "PYTHONPATH": FAKE_XAI_ROOT,
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
        },
        mounts=(Mount(str(package), f"{FAKE_XAI_ROOT}/harness", True),),
        ports=(XAI_PORT,),
        health_port=XAI_PORT,
        startup_budget_s=60.0,
        aliases=(XAI_SERVICE,),
        labels=labels,
        build_context=build_context(spec, router.name),
    )


# -- to testcontainers ------------------------------------------------------------------------


def docker_kwargs(plan: ContainerPlan) -> dict[str, Any]:
    """Everything for the one `with_kwargs` call: labels, ipc/shm, GPUs, working dir."""
    kw: dict[str, Any] = {"labels": dict(plan.labels)}
    if plan.ipc_mode:
        kw["ipc_mode"] = plan.ipc_mode
    if plan.shm_size:
        kw["shm_size"] = plan.shm_size
    if plan.working_dir:
        kw["working_dir"] = plan.working_dir
    if plan.entrypoint:
        kw["entrypoint"] = list(plan.entrypoint)
    if plan.gpu:
        kw["device_requests"] = device_requests(plan.devices)
    return kw


def device_requests(devices: tuple[DeviceReservation, ...]) -> list[Any]:
    """The DeviceRequests `docker compose up` makes of the reservations (driver, count or
    device_ids, capabilities, options); with none, every GPU. A list: docker-py rejects a
    single request."""
    from docker.types import DeviceRequest

    if not devices:
        return [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    return [
        DeviceRequest(
            driver=d.driver,
            count=d.count,
            device_ids=list(d.device_ids),
            capabilities=[list(d.capabilities)],
            options=dict(d.options),
        )
        for d in devices
    ]


def port_bindings(plan: ContainerPlan, fixed: Mapping[int, int] | None = None) -> dict[str, Any]:
    """docker-py `ports`: loopback only; ephemeral unless `fixed` (a restart keeps its port)."""
    fixed = fixed or {}
    return {f"{p}/tcp": (HOST_IP, fixed.get(p)) for p in plan.ports}
