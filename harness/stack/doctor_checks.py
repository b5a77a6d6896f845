"""`harness doctor`'s checks: whether `make gpu` can start on this box, one answer per check, and
on gpu and attach whether the owner's cloudflared has its token and sends to traefik.

Each check returns a `Check` (OK, FAIL with what to do, WARN where the answer is not known
here, or SKIP when an earlier failure makes it impossible) and never raises for what it checks.
Each reads through the helpers the bring-up itself uses (NVML, the GPU probe,
`missing_for_bringup`, `running_production`, the env files), so a check passes here exactly when
that step passes there. `run_checks` bounds each one in time: a wedged driver or Docker engine
gives a FAIL, not a hang. Secrets are read only to tell set from unset, and the tunnel token
well formed from not; only their names are ever written.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from harness.compose import StackSpec, load_stack
from harness.compose.env_file import missing_env_files, read_env_file
from harness.errors import CapabilityError, InputError
from harness.stack.containers import prod_marker
from harness.stack.containers.client import (
    PREFETCH_HINT,
    container_capability,
    docker_client,
    docker_errors,
    image_present,
)
from harness.stack.containers.plan import gpu_service_order
from harness.stack.containers.prefetch import WeightsItem, missing_for_bringup, prefetch_items
from harness.stack.containers.production import running_production
from harness.stack.tunnel_check import TUNNEL_CHECKS, tunnel_checks
from harness.telemetry.nvml import _pynvml as nvml_library
from harness.telemetry.nvml import nvml_errors
from harness.units import GIB, gib
from harness.vram.arch import resolve_arch

Status = Literal["OK", "FAIL", "SKIP", "WARN"]
T = TypeVar("T")
Which = Callable[[str], "str | None"]

# Disk estimates where the compose file gives no size: the vLLM image (README: about 10 GB), a
# model the VRAM catalog does not know, and what a run writes besides (compile caches, container
# logs, the ai-router build).
IMAGE_BYTES = 10 * GIB
UNKNOWN_MODEL_BYTES = 40 * GIB
RESERVE_BYTES = 10 * GIB
DOCKER_TIMEOUT_S = 10  # each Docker API call
# Each check's bound; the probe runs a container (up to 120 s) per image, prefetch may read a
# volume through a throwaway container (up to 60 s) per model.
LIMIT_S = {"nvidia-driver": 30.0, "docker": 30.0, "gpu-probe": 240.0, "prefetch": 300.0,
           "tunnel": 60.0}  # fmt: skip
TARGETS = ("gpu", "attach")
CDI_DIRS = ("/etc/cdi", "/var/run/cdi")
NEEDS_DOCKER = "needs Docker (see docker)"
TOOLKIT_FIX = (
    "install nvidia-container-toolkit, run `sudo nvidia-ctk runtime configure --runtime=docker` "
    "and restart dockerd"
)


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str

    @property
    def ok(self) -> bool:
        return self.status == "OK"

    def line(self) -> str:
        return f"{self.status:<4} {self.name}: {self.detail}"


def ready(checks: list[Check]) -> bool:
    """Nothing failed or was skipped: a WARN (not known here) does not stop a run."""
    return all(c.status in ("OK", "WARN") for c in checks)


def passed(name: str, detail: str) -> Check:
    return Check(name, "OK", detail)


def failed(name: str, detail: str) -> Check:
    return Check(name, "FAIL", detail)


def skipped(name: str, detail: str = NEEDS_DOCKER) -> Check:
    return Check(name, "SKIP", detail)


def vllm_images(spec: StackSpec) -> list[str]:
    """The engines' images as the compose file pins them: what the GPU probe must run."""
    return list(dict.fromkeys(s.image for s in spec.engines))


def check_compose(path: Path) -> tuple[Check, StackSpec | None]:
    try:
        spec = load_stack(path)
    except InputError as exc:
        return failed("compose", f"{exc}; fix the file, then run `harness check`"), None
    images = ", ".join(vllm_images(spec)) or "none"
    return passed("compose", f"{path}: project {spec.project}, vLLM image {images}"), spec


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def check_nvml(images: list[str], nvml: Callable[[], Any] = nvml_library) -> Check:
    """The driver through NVML: its version, the newest CUDA it supports, the GPUs it sees. The
    CUDA an image needs is not known per tag here: gpu-probe runs the image and tells."""
    name = "nvidia-driver"
    try:
        nv = nvml()
    except CapabilityError as exc:
        fix = "install the NVIDIA driver (`nvidia-smi` must list the GPU)"
        return failed(name, f"no NVIDIA GPU is usable on this machine ({exc}); {fix}")
    try:
        driver = _text(nv.nvmlSystemGetDriverVersion())
        cuda = int(nv.nvmlSystemGetCudaDriverVersion())
        cards = []
        for i in range(int(nv.nvmlDeviceGetCount())):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            total = gib(nv.nvmlDeviceGetMemoryInfo(h).total)
            cards.append(f"{_text(nv.nvmlDeviceGetName(h))} ({total})")
    except nvml_errors() as exc:
        return failed(name, f"NVML answered, then failed: {exc}; check `nvidia-smi`")
    finally:
        nv.nvmlShutdown()
    if not cards:
        return failed(name, f"driver {driver} sees no GPU; check `nvidia-smi`")
    need = ", ".join(images) or "the vLLM image"
    return passed(
        name,
        f"driver {driver}, CUDA {cuda // 1000}.{cuda % 1000 // 10} at most, {len(cards)} GPU(s): "
        f"{'; '.join(cards)}; the CUDA {need} needs is not known here: gpu-probe tests it",
    )


def check_docker(connect: Callable[..., Any] = docker_client) -> tuple[Check, Any, dict[str, Any]]:
    """(check, client, `docker info`); the client is None when no engine answers."""
    try:
        client = connect(timeout_s=DOCKER_TIMEOUT_S)
        info = dict(client.info())
    except CapabilityError as exc:
        return failed("docker", str(exc)), None, {}
    except docker_errors() as exc:
        return failed("docker", f"`docker info` failed: {exc}"), None, {}
    what = f"engine {info.get('ServerVersion', '?')}, data root {info.get('DockerRootDir', '?')}"
    return passed("docker", what), client, info


def check_toolkit(info: dict[str, Any] | None, which: Which = shutil.which) -> Check:
    """The NVIDIA container toolkit: a registered `nvidia` runtime, a CDI spec, or the hook
    that moby's DeviceRequests run through."""
    name = "container-toolkit"
    if info is None:
        return skipped(name)
    if "nvidia" in (info.get("Runtimes") or {}):
        return passed(name, "Docker lists the nvidia runtime")
    for d in info.get("CDISpecDirs") or CDI_DIRS:
        found = sorted(Path(d).glob("nvidia*")) if Path(d).is_dir() else []
        if found:
            return passed(name, f"CDI spec {found[0]}")
    hook = which("nvidia-container-runtime-hook")
    if hook:
        return passed(name, f"{hook} (Docker hands out GPUs through it)")
    return failed(
        name,
        f"no nvidia runtime in `docker info`, no NVIDIA CDI spec, no "
        f"nvidia-container-runtime-hook on PATH: {TOOLKIT_FIX}",
    )


def check_gpu_probe(
    client: Any, images: list[str], driver_ok: bool, devices: tuple[Any, ...] = ()
) -> Check:
    """`nvidia-smi -L` in each compose vLLM image with the run's DeviceRequest, the probe that
    `make gpu` runs first; it also fails where the driver is too old for the image's CUDA."""
    name = "gpu-probe"
    if client is None:
        return skipped(name)
    if not driver_ok:
        return skipped(name, "needs a usable NVIDIA driver (see nvidia-driver)")
    for image in images:
        if not image_present(client, image):
            return skipped(name, f"image {image} is not here to probe with: {PREFETCH_HINT}")
        why = container_capability(gpu=True, image=image, devices=devices)
        if why:
            return failed(name, why)
    return passed(name, f"a container of {', '.join(images)} sees the GPU")


def check_prefetch(client: Any, spec: StackSpec) -> Check:
    if client is None:
        return skipped("prefetch")
    missing = missing_for_bringup(client, spec)
    if missing:
        what = "; ".join(m.split(f": {PREFETCH_HINT}")[0] for m in missing)
        return failed("prefetch", f"{what}: run `make prefetch`")
    return passed("prefetch", "every image and model `make gpu` starts from is here")


def weights_bytes(spec: StackSpec) -> tuple[int, list[str]]:
    """The engines' weights bound for Docker volumes, by the VRAM model's sizes, and the models
    of unknown size (counted as UNKNOWN_MODEL_BYTES each)."""
    total, unknown = 0, []
    for item in prefetch_items(spec, gpu_service_order(spec)):
        if isinstance(item, WeightsItem) and item.volume and not item.volume.startswith("/"):
            try:
                total += resolve_arch(item.repo).weight_bytes
            except InputError:
                total += UNKNOWN_MODEL_BYTES
                unknown.append(item.repo)
    return total, unknown


def check_disk(
    info: dict[str, Any] | None, spec: StackSpec, prefetched: bool | None,
    usage: Callable[[str], Any] | None = None,
) -> Check:  # fmt: skip
    """Free space on Docker's data root (images and named volumes) against what is still to
    come: all that `make prefetch` fetches while anything is missing, then the reserve."""
    root = (info or {}).get("DockerRootDir")
    if not root or prefetched is None:
        return skipped("disk")
    if not os.path.isdir(root):
        return skipped("disk", f"Docker's data root {root} is not on this machine")
    free = int((usage or shutil.disk_usage)(root).free)
    need, parts = RESERVE_BYTES, [f"{gib(RESERVE_BYTES)} for caches, logs and builds"]
    if not prefetched:
        weights, unknown = weights_bytes(spec)
        need += weights + IMAGE_BYTES
        guess = (
            f" ({len(unknown)} of unknown size at {gib(UNKNOWN_MODEL_BYTES)})" if unknown else ""
        )
        parts[:0] = [f"weights {gib(weights)}{guess}", f"vLLM image about {gib(IMAGE_BYTES)}"]
    text = f"{gib(free)} free on {root}; needs up to {gib(need)}: {', '.join(parts)}"
    if free < need:
        return failed("disk", f"{text}; free space there or move Docker's data-root")
    return passed("disk", text)


def check_secrets(spec: StackSpec) -> Check:
    """Every env file of the services `make gpu` starts exists and sets each name its
    `.example` lists. Values are read only to tell set from empty, and never written."""
    services = gpu_service_order(spec)
    missing = missing_env_files(spec, services)
    if missing:
        service, where = missing[0][0], os.path.relpath(missing[0][1])
        fix = f"cp {where}.example {where}, then fill it in"
        return failed("secrets", f"{where} (env_file of {service}) does not exist: {fix}")
    files = dict.fromkeys(
        spec.path.parent / f for n in services for f in spec.services[n].env_files
    )
    done, unset = [], []
    for path in files:
        example = path.with_name(path.name + ".example")
        names = list(read_env_file(example)) if example.is_file() else []
        values = read_env_file(path)
        unset += [f"{k} in {path}" for k in names if not values.get(k)]
        done.append(f"{path} sets {', '.join(names)}" if names else f"{path} is there")
    if unset:
        return failed(
            "secrets",
            f"not set: {', '.join(unset)}; fill them in (names from the .example beside each file)",
        )
    return passed("secrets", "; ".join(done) or "no service `make gpu` starts has an env_file")


def check_production(client: Any, spec: StackSpec, marker_path: Path | None = None) -> Check:
    name = "production"
    marker = prod_marker.read(marker_path)
    if client is None:
        return skipped(name, NEEDS_DOCKER + (f"; {marker.describe()}" if marker else ""))
    try:
        found = running_production(client, spec)
    except docker_errors() as exc:
        return failed(name, f"cannot list containers: {exc}")
    if found:
        names = ", ".join(p.name for p in found)
        return failed(
            name,
            f"{spec.project!r} is running ({names}) and holds the GPU, so "
            "`make gpu` refuses: add PYTEST_ARGS=--harness-replace-running to stop and "
            "restore it, or test it as it runs with `make nightly`",
        )
    if marker and prod_marker.pid_alive(marker.pid):
        return failed(name, f"{marker.describe()}: wait for that run to end")
    if marker:
        return passed(name, f"not running; {marker.describe()}")
    return passed(name, f"{spec.project!r} is not running and not marked stopped")


def check_tunnel(client: Any, spec: StackSpec) -> list[Check]:
    """cloudflared's token and origin (harness.stack.tunnel_check), each a line of its own; the
    production tunnel keeps running on gpu, and attach tests it as it runs."""

    def run() -> list[Check]:
        return [Check(c.name, c.status, c.detail) for c in tunnel_checks(spec, client)]

    try:
        return within(LIMIT_S["tunnel"], run, [late(n, "tunnel") for n in TUNNEL_CHECKS])
    except OSError as exc:  # .secrets or a mounted config.yml unreadable
        return [failed(n, f"{type(exc).__name__}: {exc}") for n in TUNNEL_CHECKS]


def within(timeout_s: float, fn: Callable[[], T], on_timeout: T) -> T:
    """fn() in a daemon thread, or `on_timeout` after timeout_s: a call that never returns (a
    wedged driver or engine) is left behind, not waited for."""
    box: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            box.append((True, fn()))
        except BaseException as exc:  # raised again in the caller's thread
            box.append((False, exc))

    thread = threading.Thread(target=run, name="harness-doctor", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if not box:
        return on_timeout
    done, value = box[0]
    if not done:
        raise value
    return cast(T, value)


def late(name: str, bound: str = "") -> Check:
    why = "check `nvidia-smi` and `docker info`, one of them may hang"
    return failed(name, f"no answer within {LIMIT_S.get(bound or name, 30.0):.0f} s; {why}")


def bounded(name: str, fn: Callable[[], Check]) -> Check:
    """fn() within its LIMIT_S; Docker going away meanwhile, or a file it cannot read, is that
    check's FAIL, not the end of the others."""
    gone: tuple[type[Exception], ...] = (*docker_errors(), OSError)
    try:
        return within(LIMIT_S.get(name, 30.0), fn, late(name))
    except gone as exc:
        return failed(name, f"{type(exc).__name__}: {exc}")


def run_checks(compose: Path, target: str = "gpu") -> list[Check]:
    """Every check of `target`, in order, each bounded in time (LIMIT_S): on gpu all of them,
    on attach (nothing to start) the compose file, Docker and the tunnel."""
    if target not in TARGETS:
        raise ValueError(f"doctor checks {' and '.join(TARGETS)}, not {target!r}")
    first, spec = check_compose(compose)
    if target == "attach":
        return attach_checks(first, spec)
    images = vllm_images(spec) if spec else []
    driver = bounded("nvidia-driver", lambda: check_nvml(images, nvml_library))
    no_answer: tuple[Check, Any, dict[str, Any]] = (late("docker"), None, {})
    docker, client, info = within(LIMIT_S["docker"], lambda: check_docker(docker_client), no_answer)
    ok_info = info if docker.ok else None
    checks = [first, driver, docker, bounded("container-toolkit", lambda: check_toolkit(ok_info))]
    if spec is None:
        rest = ("gpu-probe", "prefetch", "disk", "secrets", "production", *TUNNEL_CHECKS)
        return checks + [skipped(n, "needs the compose file (see compose)") for n in rest]
    devices = spec.primary.devices
    probe = bounded("gpu-probe", lambda: check_gpu_probe(client, images, driver.ok, devices))
    fetched = bounded("prefetch", lambda: check_prefetch(client, spec))
    prefetched = None if fetched.status == "SKIP" else fetched.ok
    return [
        *checks, probe, fetched,
        bounded("disk", lambda: check_disk(ok_info, spec, prefetched)),
        bounded("secrets", lambda: check_secrets(spec)),
        bounded("production", lambda: check_production(client, spec)),
        *check_tunnel(client, spec),
    ]  # fmt: skip


def attach_checks(first: Check, spec: StackSpec | None) -> list[Check]:
    no_answer: tuple[Check, Any, dict[str, Any]] = (late("docker"), None, {})
    docker, client, _ = within(LIMIT_S["docker"], lambda: check_docker(docker_client), no_answer)
    if not docker.ok:  # attach itself needs no Docker; only reading cloudflared here does
        why = "attach needs none, but cloudflared's container cannot be read without it"
        docker = Check(docker.name, "WARN", f"{docker.detail}; {why}")
    if spec is None:
        return [first, docker, *(skipped(n, "needs the compose file (see compose)")
                                 for n in TUNNEL_CHECKS)]  # fmt: skip
    # Without Docker the tunnel checks still read .secrets; the origin is then not known (WARN).
    return [first, docker, *check_tunnel(client, spec)]
