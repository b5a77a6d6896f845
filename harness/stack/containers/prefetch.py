"""`harness prefetch`: the stack's images and model weights, fetched before any bring-up.

A bring-up waits for each service within its compose health budget. A first pull of the vLLM
image (about 10 GB) or a first weights download (34 GB for Qwen3-32B-FP8) inside that budget can
use it up, so both happen here, with progress lines, and `missing_for_bringup` lets a bring-up
refuse early instead of pulling silently.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.compose import StackSpec
from harness.compose.services import is_secret_name
from harness.errors import CapabilityError, StackError
from harness.stack.containers.client import (
    PREFETCH_HINT,
    docker_errors,
    image_present,
    run_throwaway,
)
from harness.stack.containers.plan import (
    Mount,
    build_context,
    gpu_service_order,
    mask_text,
    prefix,
    service_environment,
    volume_mounts,
)

Progress = Callable[[str], None]
Clock = Callable[[], float]
DEFAULT_HF_HOME = "/root/.cache/huggingface"
THROTTLE_S = 5.0
MIB = 1024 * 1024
BUDGET_NOTE = "a pull inside the bring-up would count against the health budget"
_RUN_ID = "prefetch"  # names only per-run volumes, and those never hold weights
_BAR = re.compile(r"^(.*?):?\s*(\d{1,3})%\|")  # a tqdm bar: "model.safetensors:  42%|####  |"


@dataclass(frozen=True)
class ImageItem:
    image: str
    services: tuple[str, ...]
    build_context: str | None = None  # compose `build:`: the bring-up builds it, nobody pulls it

    def describe(self) -> str:
        used = ", ".join(self.services)
        if self.build_context:
            return f"build    {self.image} from {self.build_context}, at bring-up ({used})"
        return f"pull     {self.image} ({used})"


@dataclass(frozen=True)
class WeightsItem:
    repo: str
    services: tuple[str, ...]
    image: str  # the engine's image: it ships the `hf` CLI
    volume: str | None  # None: no persistent volume holds the cache, vLLM downloads every start
    mount_target: str
    cache_dir: str  # the hub cache in the container: --download-dir, HF_HUB_CACHE or HF_HOME/hub
    revision: str | None = None
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def subdir(self) -> str:
        return os.path.relpath(self.cache_dir, self.mount_target)

    def describe(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        where = f"volume {self.volume}" if self.volume else "no persistent volume: skipped"
        return f"weights  {self.repo}{rev} -> {where} ({', '.join(self.services)})"


PrefetchItem = ImageItem | WeightsItem


def prefetch_items(spec: StackSpec, services: list[str] | None = None) -> list[PrefetchItem]:
    """Every image and engine model of the compose file (or of `services`), images first."""
    images: dict[str, ImageItem] = {}
    weights: dict[tuple[str, str | None, str | None], WeightsItem] = {}
    for name in spec.start_order if services is None else services:
        svc = spec.services[name]
        old = images.get(svc.image, ImageItem(svc.image, ()))
        built = build_context(spec, name) or old.build_context
        images[svc.image] = ImageItem(svc.image, (*old.services, name), built)
        if svc.engine is None or svc.engine.model.startswith(("/", ".", "~")):
            continue
        env, _ = service_environment(spec, svc)
        extra = dict(svc.engine.extra)
        home = env.get("HF_HOME") or DEFAULT_HF_HOME
        cache = extra.get("--download-dir") or env.get("HF_HUB_CACHE") or f"{home}/hub"
        mount = _mount_holding(volume_mounts(spec, svc, _RUN_ID)[0], cache)
        key = (svc.engine.model, extra.get("--revision"), mount.source if mount else None)
        seen = weights[key].services if key in weights else ()
        weights[key] = WeightsItem(
            key[0], (*seen, name), svc.image, key[2], mount.target if mount else cache, cache,
            key[1], env,
        )  # fmt: skip
    return [*images.values(), *weights.values()]


def _mount_holding(mounts: list[Mount], path: str) -> Mount | None:
    """The persistent mount whose target holds `path`, the deepest one when they nest."""
    inside = [m for m in mounts if path == m.target or path.startswith(m.target.rstrip("/") + "/")]
    keep = [m for m in inside if m.is_bind or not m.source.startswith(prefix(_RUN_ID))]
    return max(keep, key=lambda m: len(m.target), default=None)


class _Throttle:
    def __init__(self, clock: Clock) -> None:
        self.clock, self.last = clock, dict[str, float]()

    def due(self, key: str, final: bool = False) -> bool:
        now = self.clock()
        if not final and now - self.last.get(key, -THROTTLE_S) < THROTTLE_S:
            return False
        self.last[key] = now
        return True


def pull_image(
    client: Any, image: str, progress: Progress, *, clock: Clock = time.monotonic
) -> None:
    """`docker pull` with a line per layer at most every THROTTLE_S seconds, plus its end."""
    from docker.errors import APIError, ImageNotFound
    from docker.utils import parse_repository_tag

    repo, tag = parse_repository_tag(image)
    start, throttle = clock(), _Throttle(clock)
    progress(f"pulling {image}")
    try:
        for event in client.api.pull(repo, tag or "latest", stream=True, decode=True):
            if event.get("error"):  # the stream reports registry failures, it does not raise
                raise StackError(f"pulling {image} failed: {event['error']}")
            status, layer = str(event.get("status", "")), str(event.get("id") or "")
            if layer and not throttle.due(layer, final=status == "Pull complete"):
                continue
            d = event.get("progressDetail") or {}
            size = (
                f" {d.get('current', 0) / MIB:.1f}/{d['total'] / MIB:.1f} MiB"
                if d.get("total")
                else ""
            )
            progress(f"  {layer + ': ' if layer else ''}{status}{size}")
    except ImageNotFound as exc:
        why = f"check the image in the compose file: {exc.explanation or exc}"
        raise StackError(f"image {image} is not in its registry ({why})") from None
    except APIError as exc:
        raise StackError(f"pulling {image} failed: {exc.explanation or exc}") from None
    except OSError as exc:  # requests' connection errors and timeouts
        raise CapabilityError(f"Docker stopped answering while pulling {image}: {exc}") from None
    progress(f"pulled {image} in {clock() - start:.0f} s")


def download_weights(
    client: Any,
    image: str,
    volume: str,
    repo: str,
    hf_home_target: str,
    env: Mapping[str, str],
    progress: Progress,
    *,
    cache_dir: str | None = None,
    revision: str | None = None,
    clock: Clock = time.monotonic,
) -> None:
    """`hf download REPO` in a throwaway container of `image` (no GPU), `volume` mounted at
    `hf_home_target`. HF_TOKEN travels only in the container's environment; output is masked."""
    from docker.errors import APIError

    args = ["download", repo, *(["--revision", revision] if revision else [])]
    args += ["--cache-dir", cache_dir] if cache_dir else []
    secrets = tuple(v for k, v in env.items() if is_secret_name(k) and len(v) > 3)
    throttle, buf = _Throttle(clock), [""]

    def feed(text: str) -> None:
        *lines, buf[0] = re.split(r"[\r\n]", buf[0] + text)  # tqdm redraws with CR
        for line in filter(None, (ln.strip() for ln in lines)):
            bar = _BAR.match(line)
            if bar is None or throttle.due(bar.group(1), final=bar.group(2) == "100"):
                progress(f"  {mask_text(line, secrets)}")

    progress(f"downloading {repo} into {volume}")
    # huggingface_hub 1.0 replaced `huggingface-cli` with `hf`; older images have only the former
    for cli in ("hf", "huggingface-cli"):
        try:
            code, out = run_throwaway(
                client, image, args, entrypoint=cli, environment=env, on_output=feed,
                volumes={volume: {"bind": hf_home_target, "mode": "rw"}},
            )  # fmt: skip
        except APIError as exc:
            text = str(exc.explanation or exc)
            if cli == "hf" and "executable file not found" in text:
                continue
            raise StackError(f"downloading {repo} failed: {mask_text(text, secrets)}") from None
        except OSError as exc:
            raise CapabilityError(f"Docker stopped answering during the download: {exc}") from None
        feed("\n")
        if code != 0:
            tail = mask_text("\n".join(out.strip().splitlines()[-8:]), secrets)
            hint = (
                " (a gated or private repo needs HF_TOKEN)" if re.search(r"\b40[13]\b", out) else ""
            )
            raise StackError(f"downloading {repo} failed (exit {code}){hint}:\n{tail}")
        progress(f"downloaded {repo}")
        return


def weights_present(
    client: Any, volume: str, repo: str, *, subdir: str = "hub", image: str | None = None
) -> bool:
    """Whether `volume` holds a complete snapshot of `repo` (a config.json, no partial blob).
    Read through the volume's Mountpoint where this process may, else in a throwaway container
    of `image`; False when it cannot tell."""
    rel = os.path.normpath(f"{subdir}/models--{repo.replace('/', '--')}")
    try:
        root = volume if volume.startswith("/") else client.api.inspect_volume(volume)["Mountpoint"]
    except docker_errors():
        return False  # no such volume: nothing was downloaded into it
    with contextlib.suppress(OSError):
        if os.access(root, os.R_OK | os.X_OK):
            base = Path(root) / rel
            done = any(base.glob("snapshots/*/config.json"))
            return done and not any(base.glob("blobs/*.incomplete"))
    if image is None:
        return False
    d = shlex.quote(f"/hf/{rel}")
    script = f"ls {d}/snapshots/*/config.json && ! ls {d}/blobs/*.incomplete"
    try:
        code, _ = run_throwaway(
            client, image, ["-c", script], entrypoint="sh",
            volumes={volume: {"bind": "/hf", "mode": "ro"}}, timeout_s=60,
        )  # fmt: skip
    except docker_errors():
        return False
    return code == 0


def missing_for_bringup(
    client: Any, spec: StackSpec, *, include_edge: bool = False, images: bool = True,
    reader_image: str | None = None,
) -> list[str]:  # fmt: skip
    """What a bring-up of `spec` would otherwise fetch inside its health budgets, one sentence
    each; empty when all is here. Images with `build:` are left to the bring-up. `images=False`
    checks the weights only; `reader_image` reads the volume where the engine image is absent."""
    missing: list[str] = []
    absent: set[str] = set()
    for item in prefetch_items(spec, gpu_service_order(spec, include_edge)):
        if isinstance(item, ImageItem):
            present = not images or item.build_context or image_present(client, item.image)
            if not present:
                absent.add(item.image)
                missing.append(f"image {item.image} is not here: {PREFETCH_HINT}; {BUDGET_NOTE}")
        elif item.volume and not weights_present(
            client, item.volume, item.repo, subdir=item.subdir,
            image=reader_image or (None if item.image in absent else item.image),
        ):  # fmt: skip
            missing.append(
                f"weights for {item.repo} are not in volume {item.volume}: {PREFETCH_HINT}; "
                f"{BUDGET_NOTE}"
            )
    return missing


def run_prefetch(client: Any, items: list[PrefetchItem], progress: Progress = print) -> None:
    """Pull the images that are not here, then download the weights not yet in their volume."""
    for item in items:
        if isinstance(item, ImageItem):
            if item.build_context:
                progress(f"{item.image}: built from {item.build_context} at bring-up, not pulled")
            elif image_present(client, item.image):
                progress(f"{item.image}: already here")
            else:
                pull_image(client, item.image, progress)
        elif item.volume is None:
            progress(f"{item.repo}: skipped, no persistent volume holds {item.cache_dir}")
        elif weights_present(client, item.volume, item.repo, subdir=item.subdir, image=item.image):
            progress(f"{item.repo}: already in {item.volume}")
        elif not image_present(client, item.image):
            raise StackError(f"{item.repo}: downloading it needs {item.image}; pull that first")
        else:
            download_weights(
                client, item.image, item.volume, item.repo, item.mount_target, item.env,
                progress, cache_dir=item.cache_dir, revision=item.revision,
            )  # fmt: skip
