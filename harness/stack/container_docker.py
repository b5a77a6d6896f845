"""Docker itself for the containers backend: the client, the capability probe, the reaper
(Ryuk) decision, and `sweep()`, which removes whatever carries the harness label."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

from harness.errors import CapabilityError
from harness.stack.container_spec import LABEL, ORDER_LABEL, RUN_LABEL

RYUK_ENV = "TESTCONTAINERS_RYUK_DISABLED"


def docker_client(timeout_s: int = 60) -> Any:
    """A docker-py client; CapabilityError when the library or the engine is missing."""
    try:
        import docker
    except ImportError:
        raise CapabilityError(
            "the docker and testcontainers packages are not installed (pip install '.[gpu]')"
        ) from None
    try:
        client = docker.from_env(timeout=timeout_s)
        client.ping()
    except Exception as exc:
        raise CapabilityError(
            f"no Docker engine answers ({type(exc).__name__}); start one "
            "(scripts/ci-docker.sh does, as root)"
        ) from None
    return client


def container_capability(gpu: bool) -> str | None:
    """Why containers (on the GPU, with `gpu`) cannot run here, or None when they can."""
    try:
        import testcontainers  # noqa: F401
    except ImportError:
        return "the testcontainers package is not installed (pip install '.[gpu]')"
    try:
        client = docker_client(timeout_s=10)
    except CapabilityError as exc:
        return str(exc)
    if not gpu:
        return None
    runtimes = client.info().get("Runtimes") or {}
    if "nvidia" not in runtimes:
        return (
            f"docker has no nvidia runtime (has: {', '.join(runtimes) or 'none'}); install "
            "nvidia-container-toolkit and run `nvidia-ctk runtime configure --runtime=docker`"
        )
    from harness.telemetry.nvml import nvml_device_count

    if nvml_device_count() == 0:
        return "NVML sees no GPU (no driver, or nvidia-ml-py missing: pip install '.[gpu]')"
    return None


def configure_ryuk(client: Any, wanted: bool = True) -> bool:
    """Use testcontainers' reaper only when its image is already here (no registry to pull it
    from) and it is wanted; otherwise turn it off. An explicit TESTCONTAINERS_RYUK_DISABLED wins."""
    from testcontainers.core.config import testcontainers_config as tc

    if RYUK_ENV in os.environ:
        return not tc.ryuk_disabled
    present = True
    try:
        client.images.get(tc.ryuk_image)
    except Exception:
        present = False
    use = wanted and present
    if not use:
        os.environ[RYUK_ENV] = "true"
    tc.ryuk_disabled = not use
    return use


def sweep(
    run_id: str | None = None, client: Any = None, progress: Callable[[str], None] = print
) -> list[str]:
    """Remove every container, network and volume with the harness label (of one run, when
    `run_id` is given): containers in reverse start order. Returns what it removed."""
    client = client or docker_client()
    wanted = [f"{LABEL}=1"] + ([f"{RUN_LABEL}={run_id}"] if run_id else [])
    removed: list[str] = []
    found = client.containers.list(all=True, filters={"label": wanted})
    for c in sorted(found, key=lambda c: -int((c.labels or {}).get(ORDER_LABEL, "0") or 0)):
        with contextlib.suppress(Exception):
            c.stop(timeout=10)
        with contextlib.suppress(Exception):
            c.remove(force=True, v=True)
            removed.append(f"container {c.name}")
    for n in client.networks.list(filters={"label": wanted}):
        with contextlib.suppress(Exception):
            n.remove()
            removed.append(f"network {n.name}")
    for v in client.volumes.list(filters={"label": wanted}):
        with contextlib.suppress(Exception):
            v.remove(force=True)
            removed.append(f"volume {v.name}")
    for item in removed:
        progress(f"removed {item}")
    return removed
