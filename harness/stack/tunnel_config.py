"""What cloudflared serves: its ingress rules, from the last configuration it logged or from
the config.yml the compose file mounts into it, and whether each rule's origin is traefik.

A token-run tunnel is remotely managed: its rules live in Cloudflare's dashboard, and
cloudflared logs each configuration it applies, console-formatted (zerolog, Go-quoted fields)

    2024-12-10T09:00:00Z INF Updated to new configuration config="{\\"ingress\\":[...]}" version=3

or as a JSON object with `--output json`. The last such line is what it serves. A
locally-managed tunnel reads `ingress:` from its config.yml.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import yaml

from harness.compose import ServiceSpec, StackSpec

CONFIG_MESSAGE = "Updated to new configuration"
# Where cloudflared looks for its configuration when no --config is given (the image's user is
# nonroot).
DEFAULT_CONFIGS = (
    "/etc/cloudflared/config.yml",
    "/etc/cloudflared/config.yaml",
    "/home/nonroot/.cloudflared/config.yml",
    "/home/nonroot/.cloudflared/config.yaml",
)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CONFIG_FIELD = re.compile(r'config="((?:[^"\\]|\\.)*)"')
_VERSION_FIELD = re.compile(r"\bversion=(-?\d+)")
_GO_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)")
FIXED_ANSWER = re.compile(r"^http_status:\d{3}$")


@dataclass(frozen=True)
class Rule:
    """One ingress rule: the hostname and path it matches (None: any) and where it sends them."""

    service: str
    hostname: str | None = None
    path: str | None = None

    def __str__(self) -> str:
        return f"{self.hostname or '*'}{self.path or ''} -> {self.service}"


@dataclass(frozen=True)
class Origin:
    """Where traefik is reached from cloudflared's network: its names and entrypoint ports."""

    hosts: tuple[str, ...]
    ports: tuple[int, ...]

    def __str__(self) -> str:
        return f"{' or '.join(self.hosts)} port {' or '.join(map(str, self.ports))}"


def _go_unquote(body: str) -> str:
    """The text of a Go-quoted string's body (zerolog's console writer quotes with strconv)."""

    def one(m: re.Match[str]) -> str:
        esc = m.group(1)
        if esc[0] in "xuU" and len(esc) > 1:
            return chr(int(esc[1:], 16))
        return {"a": "\a", "v": "\v", "n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f",
                "0": "\0"}.get(esc, esc)  # fmt: skip

    return _GO_ESCAPE.sub(one, body)


def _rules(doc: Any) -> list[Rule] | None:
    """The ingress rules of a configuration document, None when it is not one."""
    if not isinstance(doc, dict):
        return None
    ingress = doc.get("ingress") or []
    if not isinstance(ingress, list):
        return None
    rules = []
    for item in ingress:
        if isinstance(item, dict):
            host, path = item.get("hostname"), item.get("path")
            rules.append(Rule(str(item.get("service", "")), host or None, path or None))
    return rules


def _config_of_line(line: str) -> tuple[Any, str] | None:
    """(configuration, version) from one log line, console or JSON (`--output json`)."""
    line = _ANSI.sub("", line).strip()
    if CONFIG_MESSAGE not in line:
        return None
    if line.startswith("{"):
        try:
            event = json.loads(line)
            if event.get("message") != CONFIG_MESSAGE:
                return None
            return json.loads(event["config"]), str(event.get("version", "?"))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
    m = _CONFIG_FIELD.search(line)
    if m is None:
        return None
    try:
        config = json.loads(_go_unquote(m.group(1)))
    except ValueError:
        return None
    version = _VERSION_FIELD.search(line[m.end() :]) or _VERSION_FIELD.search(line[: m.start()])
    return config, version.group(1) if version else "?"


def rules_from_log(text: str) -> tuple[list[Rule], str] | None:
    """The ingress rules of the last configuration cloudflared applied, and its version; None
    when the log holds none."""
    for line in reversed(text.splitlines()):
        found = _config_of_line(line)
        if found is not None:
            rules = _rules(found[0])
            if rules is not None:
                return rules, found[1]
    return None


def rules_from_config(text: str) -> list[Rule]:
    """The ingress rules of a locally-managed tunnel's config.yml."""
    try:
        rules = _rules(yaml.safe_load(text))
    except yaml.YAMLError:
        rules = None
    return rules or []


def _port(address: str) -> int | None:
    """The port of a traefik entrypoint address (`:80`, `0.0.0.0:80/tcp`)."""
    tail = address.split("/", 1)[0].rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else None


def traefik_origin(spec: StackSpec) -> Origin:
    """The compose file's traefik as cloudflared reaches it: by its service or container name,
    on the entrypoints its routers use (every entrypoint where no router names one)."""
    proxy = spec.role("proxy")
    used = {
        e.strip()
        for s in spec.services.values()
        for k, v in s.labels.items()
        if k.startswith("traefik.http.routers.") and k.endswith(".entrypoints")
        for e in v.split(",")
    }
    ports: list[int] = []
    for arg in proxy.command:
        flag, _, address = arg.partition("=")
        if flag.startswith("--entrypoints.") and flag.endswith(".address"):
            entrypoint = flag[len("--entrypoints.") : -len(".address")]
            port = _port(address)
            if port is not None and (not used or entrypoint in used):
                ports.append(port)
    hosts = tuple(dict.fromkeys(h for h in (proxy.name, proxy.container_name) if h))
    return Origin(hosts, tuple(dict.fromkeys(ports)) or (80,))


def rule_problem(rule: Rule, origin: Origin) -> str | None:
    """Why a rule does not send its traffic to traefik; None when it does, or answers itself."""
    if FIXED_ANSWER.match(rule.service):
        return None
    parts = urlsplit(rule.service)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"rule {rule} is not an http origin, so it does not reach traefik ({origin})"
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return f"rule {rule} has no valid port; traefik is {origin}"
    if parts.hostname not in origin.hosts or port not in origin.ports:
        return (
            f"rule {rule} sends to {parts.hostname}:{port}, not to traefik ({origin}), "
            "so it skips traefik's router rule"
        )
    return None


def mounted_config(spec: StackSpec, tunnel: ServiceSpec) -> tuple[Path, str] | None:
    """The config.yml cloudflared reads (its --config, else its default places) where the
    compose file binds it in from this machine, and its text."""
    wanted = list(DEFAULT_CONFIGS)
    for i, arg in enumerate(tunnel.command):
        if arg == "--config" and i + 1 < len(tunnel.command):
            wanted = [tunnel.command[i + 1]]
        elif arg.startswith("--config="):
            wanted = [arg.partition("=")[2]]
    base = spec.path.resolve().parent
    for volume in tunnel.volumes:
        source, _, rest = volume.partition(":")
        target = rest.split(":", 1)[0]
        if not target or not source.startswith((".", "/", "~")):
            continue  # a named volume: not a file on this machine
        for path in wanted:
            inside = PurePosixPath(path)
            if inside == PurePosixPath(target) or PurePosixPath(target) in inside.parents:
                rel = inside.relative_to(target)
                host = (base / Path(source).expanduser() / rel).resolve()
                if host.is_file():
                    return host, host.read_text()
    return None
