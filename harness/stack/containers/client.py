"""Docker itself for the containers backend: the client, the capability probe, throwaway
containers, the reaper (Ryuk) decision, `sweep()`, which removes whatever carries the harness
label, and what a container's attributes say (its start time, its published ports)."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from harness.compose import DeviceReservation
from harness.errors import CapabilityError, StackError
from harness.stack.containers.plan import (
    HOST_IP,
    LABEL,
    ORDER_LABEL,
    RUN_LABEL,
    ContainerPlan,
    docker_kwargs,
)

RYUK_ENV = "TESTCONTAINERS_RYUK_DISABLED"
PREFETCH_HINT = "run `make prefetch` (or `harness prefetch`) first"
_NANOS = re.compile(r"(\.\d{6})\d*")


def docker_errors() -> tuple[type[Exception], ...]:
    """What the Docker SDK raises: its own errors, and requests' for the transport under it."""
    import docker.errors
    import requests

    return (docker.errors.DockerException, requests.exceptions.RequestException)


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
    except docker_errors() as exc:
        raise CapabilityError(
            f"no Docker engine answers ({type(exc).__name__}); start one "
            "(scripts/ci-docker.sh does, as root)"
        ) from None
    return client


def container_capability(
    gpu: bool, image: str | None = None, devices: tuple[DeviceReservation, ...] = ()
) -> str | None:
    """Why containers (on the GPU, with `gpu`) cannot run here, or None when they can. The GPU
    probe runs `nvidia-smi -L` in `image`, the compose file's vLLM image, with the DeviceRequest
    the run makes of `devices`: an older local vLLM image could pass where the pinned one fails."""
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
    if not image:
        return "no vLLM image to probe the GPU with: the compose file names none"
    why = gpu_probe(client, image, devices)
    if why:
        return why
    from harness.telemetry.nvml import nvml_device_count

    # The harness reads the card itself too (VRAM preflight, per-engine usage).
    if nvml_device_count() == 0:
        return "NVML sees no GPU (no driver, or nvidia-ml-py missing: pip install '.[gpu]')"
    return None


def gpu_probe(
    client: Any,
    image: str,
    devices: tuple[DeviceReservation, ...] = (),
    timeout_s: float = 120.0,
) -> str | None:
    """Why a container from `image` cannot use the GPU, or None. Only `image` itself is probed,
    never another tag. A registered `nvidia` runtime is not required: moby serves DeviceRequests
    through nvidia-container-runtime-hook alone, and the probe also catches a driver too old for
    the image's CUDA."""
    if not image_present(client, image):
        return f"image {image} is not here to probe the GPU with: {PREFETCH_HINT}"
    # The plans' own DeviceRequest, so the probe asks Docker exactly what the run will.
    probe = ContainerPlan(
        service="gpu-probe", role="probe", name="", image=image, command=(), gpu=True,
        devices=devices,
    )  # fmt: skip
    try:
        code, out = run_throwaway(
            client, image, ["-L"], entrypoint="nvidia-smi",
            device_requests=docker_kwargs(probe)["device_requests"], timeout_s=timeout_s,
        )  # fmt: skip
    except docker_errors() as exc:
        text = str(getattr(exc, "explanation", None) or exc).strip()
        return f"{_gpu_reason(text)} (docker: {text})"
    if code != 0 or "GPU " not in out:
        tail = " | ".join(out.strip().splitlines()[-3:]) or "no output"
        return f"nvidia-smi in {image} found no GPU (exit {code}: {tail})"
    return None


def _gpu_reason(text: str) -> str:
    low = text.lower()
    if "could not select device driver" in low:
        return "Docker cannot hand out GPUs: install nvidia-container-toolkit, restart dockerd"
    if "unsatisfied condition: cuda" in low or "update your driver" in low:
        return "the NVIDIA driver is too old for the CUDA version of the vLLM image"
    if "driver not loaded" in low or "nvml error" in low or "no cuda-capable" in low:
        return "no usable GPU: the NVIDIA driver is not loaded or sees no GPU"
    return "a container with a GPU cannot start"


def image_present(client: Any, image: str) -> bool:
    """Whether `image` is in the local image store (this never pulls)."""
    from docker.errors import DockerException

    try:
        client.images.get(image)
    except DockerException:  # ImageNotFound, or an engine that cannot tell
        return False
    return True


def run_throwaway(
    client: Any,
    image: str,
    command: Sequence[str],
    *,
    entrypoint: str,
    volumes: Mapping[str, Mapping[str, str]] | None = None,
    environment: Mapping[str, str] | None = None,
    device_requests: list[Any] | None = None,
    on_output: Callable[[str], None] | None = None,
    timeout_s: float | None = None,
) -> tuple[int, str]:
    """Run one short-lived container to its end and remove it: (exit code, output). It never
    pulls: a missing image is docker.errors.ImageNotFound. The harness label lets `sweep()`
    find one that a killed harness left behind."""
    container = client.containers.create(
        image, command=list(command), entrypoint=entrypoint, labels={LABEL: "1"},
        volumes={k: dict(v) for k, v in (volumes or {}).items()},
        environment=dict(environment or {}), device_requests=device_requests,
    )  # fmt: skip
    chunks: list[str] = []
    try:
        container.start()
        for chunk in container.logs(stream=True, follow=True):
            text = chunk.decode(errors="replace") if isinstance(chunk, bytes) else str(chunk)
            chunks.append(text)
            if on_output is not None:
                on_output(text)
        code = int(container.wait(timeout=timeout_s).get("StatusCode", -1))
    finally:
        with contextlib.suppress(*docker_errors()):
            container.remove(force=True)
    return code, "".join(chunks)


def configure_ryuk(client: Any, wanted: bool = True) -> bool:
    """Use testcontainers' reaper only when its image is already here (no registry to pull it
    from) and it is wanted; otherwise turn it off. An explicit TESTCONTAINERS_RYUK_DISABLED wins."""
    from testcontainers.core.config import testcontainers_config as tc

    if RYUK_ENV in os.environ:
        return not tc.ryuk_disabled
    present = True
    from docker.errors import DockerException

    try:
        client.images.get(tc.ryuk_image)
    except DockerException:
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
        with contextlib.suppress(*docker_errors()):
            c.stop(timeout=10)
        with contextlib.suppress(*docker_errors()):
            c.remove(force=True, v=True)
            removed.append(f"container {c.name}")
    for n in client.networks.list(filters={"label": wanted}):
        with contextlib.suppress(*docker_errors()):
            n.remove()
            removed.append(f"network {n.name}")
    for v in client.volumes.list(filters={"label": wanted}):
        with contextlib.suppress(*docker_errors()):
            v.remove(force=True)
            removed.append(f"volume {v.name}")
    for item in removed:
        progress(f"removed {item}")
    return removed


def started_at(container: Any) -> float | None:
    """State.StartedAt as time.time(): docker's nanoseconds cut to what Python parses."""
    text = (container.attrs.get("State") or {}).get("StartedAt") or ""
    if not text or text.startswith("0001-"):
        return None
    return datetime.fromisoformat(_NANOS.sub(r"\1", text).replace("Z", "+00:00")).timestamp()


def published_port(container: Any, port: int) -> int:
    for binding in (container.attrs["NetworkSettings"]["Ports"] or {}).get(f"{port}/tcp") or []:
        if binding.get("HostIp") in (HOST_IP, "") and binding.get("HostPort"):
            return int(binding["HostPort"])
    raise StackError(f"{container.name}: port {port} is not published on {HOST_IP}")
