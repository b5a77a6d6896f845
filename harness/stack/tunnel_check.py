"""cloudflared on the gpu and attach targets: its token is there, and its origin is traefik.

The harness never starts the owner's tunnel (the twin names that: substitution `tunnel`), so
on the stacks that have one it is checked where it runs:

- **token**: `CF_TUNNEL_TOKEN` in `infra/.secrets` (compose's `--env-file`, which fills in the
  cloudflared service's `TUNNEL_TOKEN: ${CF_TUNNEL_TOKEN}`), and the running container's own
  `TUNNEL_TOKEN` (`docker inspect`). A token is base64 of a JSON object with the account (`a`),
  the tunnel id (`t`) and the secret (`s`); it is decoded only far enough to tell that shape,
  and no part of it is ever written: every message names the file and the variable only.
- **origin**: every ingress rule of the configuration cloudflared serves (its last logged one,
  else a mounted config.yml: `tunnel_config`) sends its traffic to the compose file's traefik,
  except a fixed `http_status:NNN` answer; a rule straight to `http://ai-router:8080` skips
  traefik's router rule.

Where neither can be read (no cloudflared container here, nothing logged yet), the origin is a
WARN: not known is not a pass.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from harness.compose import ServiceSpec, StackSpec
from harness.compose.env_file import read_env_file
from harness.errors import SpecError
from harness.stack.tunnel_config import (
    CONFIG_MESSAGE,
    FIXED_ANSWER,
    mounted_config,
    rule_problem,
    rules_from_config,
    rules_from_log,
    traefik_origin,
)

Status = Literal["OK", "FAIL", "WARN"]
TUNNEL_CHECKS = ("tunnel-token", "tunnel-origin")

TOKEN_VAR = "CF_TUNNEL_TOKEN"  # in .secrets, when the compose file does not name another
CONTAINER_VAR = "TUNNEL_TOKEN"  # what cloudflared itself reads
TOKEN_PARTS = {"a": "account", "t": "tunnel id", "s": "secret"}
SECRETS_FILE = ".secrets"
LOG_TAIL = 50_000  # lines of the container's log searched for its last configuration
SETUP_DOC = "docs/cloudflare-tunnel-setup.md"
TOKEN_FIX = (
    f"copy the tunnel's token from Cloudflare's dashboard into {TOKEN_VAR}, then `make up` "
    f"({SETUP_DOC})"
)
ORIGIN_FIX = f"set each public hostname's service to http://traefik:80 ({SETUP_DOC})"

_INTERPOLATED = re.compile(r"^\$\{?([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class TunnelCheck:
    name: str  # tunnel-token | tunnel-origin
    status: Status
    detail: str


@dataclass(frozen=True)
class TunnelContainer:
    """What `docker inspect` and `docker logs` tell of the cloudflared container. The token is
    kept only as what is wrong with it (None: well formed), never as its value."""

    name: str
    state: str
    token_problem: str | None
    logs: str


# -- the token --------------------------------------------------------------------------------


def token_problem(value: str | None) -> str | None:
    """None for a well-formed tunnel token, else what is wrong with it, in words that hold no
    part of it (no decoder's message either: those quote the bytes they choke on)."""
    if value is None:
        return "is not set"
    text = value.strip()
    if not text:
        return "is empty"
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return "is not base64 (a tunnel token is base64 of a JSON object)"
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return "is base64, but not of JSON (a tunnel token is base64 of a JSON object)"
    if not isinstance(doc, dict):
        return "is base64 of JSON, but not of an object with keys a, t, s"
    missing = [f"{k} ({what})" for k, what in TOKEN_PARTS.items() if not _filled(doc.get(k))]
    if missing:
        return f"is base64 of a JSON object without {', '.join(missing)}"
    return None


def shown(path: Path) -> str:
    """A path as a message shows it: from the working directory where it lies below it."""
    rel = os.path.relpath(path)
    return str(path) if rel.startswith("..") else rel


def _filled(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def token_variable(tunnel: ServiceSpec) -> str:
    """The variable compose fills the container's TUNNEL_TOKEN from (`${CF_TUNNEL_TOKEN}`)."""
    m = _INTERPOLATED.match(tunnel.environment.get(CONTAINER_VAR, ""))
    return m.group(1) if m else TOKEN_VAR


def env_token(env: list[str] | None) -> str | None:
    """TUNNEL_TOKEN from a container's `Config.Env` (KEY=VALUE strings)."""
    for item in env or ():
        key, sep, value = item.partition("=")
        if sep and key == CONTAINER_VAR:
            return value
    return None


def check_token(secrets: Path, variable: str, container: TunnelContainer | None) -> TunnelCheck:
    """The token the running cloudflared has, and the one the next `make up` hands it."""
    name = "tunnel-token"
    where = shown(secrets)
    if secrets.is_file():
        file_problem = token_problem(read_env_file(secrets).get(variable))
        in_file = f"{variable} in {where}"
    elif container is None:
        # An attached stack may run on another machine: neither token can be read here.
        why = f"no cloudflared container here and no {where} to read {variable} from"
        return TunnelCheck(name, "WARN", f"token not known: {why}")
    else:
        file_problem, in_file = "does not exist", where
    if container is not None and container.token_problem is not None:
        also = f"; {in_file} {file_problem}" if file_problem else ""
        return TunnelCheck(
            name,
            "FAIL",
            f"{CONTAINER_VAR} in container {container.name}'s environment "
            f"{container.token_problem}{also}: {TOKEN_FIX}",
        )
    if file_problem is not None:
        running = (
            f"; container {container.name} runs with a well-formed one, but the next "
            "`make up` starts it without"
            if container is not None
            else ""
        )
        return TunnelCheck(name, "FAIL", f"{in_file} {file_problem}{running}: {TOKEN_FIX}")
    shape = "well-formed (account, tunnel id, secret)"
    if container is None:
        return TunnelCheck(
            name, "OK", f"{in_file} is {shape}; no cloudflared container here to compare"
        )
    return TunnelCheck(
        name,
        "OK",
        f"{CONTAINER_VAR} of container {container.name} ({container.state}) and {in_file} "
        f"are {shape}",
    )


# -- the origin -------------------------------------------------------------------------------


def check_origin(
    spec: StackSpec,
    container: TunnelContainer | None,
    config: tuple[Path, str] | None = None,
    unknown_why: str = "",
) -> TunnelCheck:
    """Each ingress rule of the configuration cloudflared serves points at traefik: the last one
    it logged, else the config.yml the compose file mounts; WARN where neither is readable."""
    name = "tunnel-origin"
    logged = rules_from_log(container.logs) if container is not None else None
    if logged is not None and container is not None:
        rules = logged[0]
        source = f"container {container.name}'s last configuration (version {logged[1]})"
    elif config is not None:
        rules, source = rules_from_config(config[1]), shown(config[0])
    else:
        if container is not None:
            why = (
                f"container {container.name} ({container.state}) has logged no ingress "
                f"configuration ({CONFIG_MESSAGE!r}) yet"
            )
        else:
            why = unknown_why or "no cloudflared container of this stack on this machine"
        return TunnelCheck(name, "WARN", f"origin not known: {why}, and no config.yml is mounted")
    origin = traefik_origin(spec)
    problems = [p for p in (rule_problem(r, origin) for r in rules) if p]
    if problems:
        return TunnelCheck(name, "FAIL", f"{source}: {'; '.join(problems)}: {ORIGIN_FIX}")
    served = [r for r in rules if not FIXED_ANSWER.match(r.service)]
    if not served:
        what = ", ".join(map(str, rules)) or "no rules"
        return TunnelCheck(
            name, "FAIL", f"{source}: no rule sends traffic to traefik ({what}): {ORIGIN_FIX}"
        )
    return TunnelCheck(name, "OK", f"{source}: {', '.join(map(str, served))} (traefik)")


# -- where it runs ----------------------------------------------------------------------------


def container_of(attrs: dict[str, Any], logs: str) -> TunnelContainer:
    """The cloudflared container from its `docker inspect` document and its log."""
    name = str(attrs.get("Name") or attrs.get("Id", "?")[:12]).lstrip("/")
    state = str((attrs.get("State") or {}).get("Status") or "?")
    env = (attrs.get("Config") or {}).get("Env")
    return TunnelContainer(name, state, token_problem(env_token(env)), logs)


def find_container(
    client: Any, spec: StackSpec, tunnel: ServiceSpec, container_id: str | None = None
) -> TunnelContainer | None:
    """The stack's cloudflared container: `container_id` where the run started its own, else the
    compose project's (by its labels, else by its container_name), a running one first."""
    if container_id:
        found = [client.containers.get(container_id)]
    else:
        labels = [
            f"com.docker.compose.project={spec.project}",
            f"com.docker.compose.service={tunnel.name}",
        ]
        found = [
            c
            for c in client.containers.list(all=True, filters={"label": labels})
            if (c.labels or {}).get("com.docker.compose.service") == tunnel.name
            and (c.labels or {}).get("com.docker.compose.project") == spec.project
        ]
        if not found and tunnel.container_name:
            named = client.containers.list(all=True, filters={"name": tunnel.container_name})
            found = [c for c in named if c.name == tunnel.container_name]
    if not found:
        return None
    c = sorted(found, key=lambda c: (c.attrs.get("State") or {}).get("Status") != "running")[0]
    logs = c.logs(stdout=True, stderr=True, tail=LOG_TAIL)
    text = logs.decode("utf-8", "replace") if isinstance(logs, bytes) else str(logs)
    return container_of(c.attrs, text)


def tunnel_checks(
    spec: StackSpec, client: Any | None, container_id: str | None = None
) -> list[TunnelCheck]:
    """Both checks for the stack of `spec` on this machine; `client` None: no Docker here."""
    from harness.stack.containers.client import docker_errors

    try:
        tunnel = spec.role("tunnel")
    except SpecError:
        why = "the compose file has no cloudflared (harness.role=tunnel) service"
        return [TunnelCheck(n, "WARN", f"not checked: {why}") for n in TUNNEL_CHECKS]
    container, why = None, "no Docker engine answers here to read the cloudflared container"
    if client is not None:
        why = f"no container of service {tunnel.name} in project {spec.project!r} here"
        try:
            container = find_container(client, spec, tunnel, container_id)
        except docker_errors() as exc:
            why = f"reading the cloudflared container failed ({type(exc).__name__})"
    secrets = spec.path.resolve().parent / SECRETS_FILE
    return [
        check_token(secrets, token_variable(tunnel), container),
        check_origin(spec, container, mounted_config(spec, tunnel), why),
    ]
