"""The process behind a running service this harness did not start: the compose project's
container for it (labels com.docker.compose.project/service, its host PID from State.Pid), or
else the process listening on the service's port on this machine.

NVML reports GPU memory by host PID, held by vLLM's EngineCore, a child of the process found
here; `harness.vram.usage` matches a GPU process through its parents.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harness.telemetry.procfs import parent_of

_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "0.0.0.0")
_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp
# The userland proxy that publishes a container port holds the host socket, not the service.
_PROXIES = ("docker-proxy",)


@dataclass(frozen=True)
class Found:
    container_id: str | None
    pid: int | None
    how: str


def url_port(url: str) -> tuple[str, int] | None:
    parts = urlsplit(url)
    if parts.hostname is None:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname, port


def _listening_inodes(port: int, proc: Path) -> set[str]:
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            rows = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 9 and cols[3] == _LISTEN and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
    return inodes


def _comm(pid: int, proc: Path) -> str:
    try:
        return (proc / str(pid) / "comm").read_text().strip()
    except OSError:
        return ""


def listening_pid(port: int, proc: Path = Path("/proc")) -> int | None:
    """The process that listens on TCP `port` (the top one where a server's workers share the
    socket); None when none is visible to this user or it is Docker's port proxy."""
    inodes = _listening_inodes(port, proc)
    if not inodes:
        return None
    holders = set()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue  # another user's process, or gone
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                holders.add(int(entry.name))
                break
    tops = sorted(p for p in holders if parent_of(p, proc) not in holders)
    if not tops or _comm(tops[0], proc) in _PROXIES:
        return None
    return tops[0]


def compose_container(client: Any, project: str, service: str, port: int) -> Found | None:
    """The running container of `service` in compose project `project`, when it publishes
    `port` or publishes nothing (then it is reached through a proxy, like the ai-router behind
    traefik)."""
    labels = [f"com.docker.compose.project={project}", f"com.docker.compose.service={service}"]
    for c in client.containers.list(filters={"label": labels, "status": "running"}):
        ports = (c.attrs.get("NetworkSettings") or {}).get("Ports") or {}
        published = {int(b["HostPort"]) for bindings in ports.values() for b in bindings or () if b}
        if published and port not in published:
            continue
        pid = (c.attrs.get("State") or {}).get("Pid") or None
        return Found(c.id, pid, f"container {c.name} of project {project} (pid {pid})")
    return None


def docker_or_none() -> Any | None:
    """A docker client when an engine answers quickly, else None: discovery is best effort."""
    from harness.errors import CapabilityError
    from harness.stack.containers.client import docker_client

    try:
        return docker_client(timeout_s=5)
    except CapabilityError:  # no library, no socket, no permission: discover by port instead
        return None


def discover(
    service: str, url: str, project: str, client: Any | None, proc: Path = Path("/proc")
) -> Found | None:
    """The container or process serving `url` on this machine; None when it is elsewhere or
    cannot be seen."""
    where = url_port(url)
    if where is None or where[0] not in _LOCAL_HOSTS:
        return None
    if client is not None:
        from docker.errors import DockerException
        from requests.exceptions import RequestException

        try:
            found = compose_container(client, project, service, where[1])
        except (DockerException, RequestException):  # a Docker hiccup must not fail an attach
            found = None
        if found is not None:
            return found
    pid = listening_pid(where[1], proc)
    if pid is None:
        return None
    return Found(None, pid, f"pid {pid} listening on port {where[1]}")
