"""The `twin-docker` plans: the twin's services as containers of the local base image.

Each container runs exactly the argv the `twin` process backend would run (built by that
backend's own methods, so the two targets cannot drift apart), with three changes a container
needs: servers listen on 0.0.0.0 inside their own network namespace, upstream URLs use the
compose service names (network aliases on the run's network), and only the environment the
service needs goes in, never the harness's whole environment.

The host's Python install, the virtualenv, the repo checkout and the twin models are bind-mounted
read-only at the same paths, so the interpreter, the editable installs and the model paths in the
argv resolve unchanged; the run's log folder is mounted read-write for the session and request
logs the services write.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from harness.spec import StackSpec
from harness.spec.services import is_secret_name
from harness.stack.base import ServiceHandle, Stack
from harness.stack.base_image import BASE_IMAGE
from harness.stack.container_spec import (
    ORDER_LABEL,
    SERVICE_LABEL,
    ContainerPlan,
    Mount,
    container_name,
    run_labels,
    startup_budget,
)
from harness.stack.process import XAI_SERVICE, ProcessBackend, TwinModelDirs
from harness.vram import VramPlan

# The compose file's container ports; each container has its own, so they may repeat.
ENGINE_PORT = 8000
XAI_PORT = 8000
ROUTER_PORT = 8080
# Host variables a container may inherit; everything else it gets is set on purpose.
_PASS_KEYS = ("LANG", "LC_ALL", "TZ", "PYTHONHASHSEED")
_PASS_PREFIXES = ("VLLM_", "HF_", "TRANSFORMERS_", "OMP_", "MKL_", "TORCH")


@dataclass(frozen=True)
class TwinInputs:
    """What the twin needs besides the spec: the KV plan it is sized from and the models."""

    plan: VramPlan
    models: TwinModelDirs
    kv_overrides: Mapping[str, int] = field(default_factory=dict)
    router_env: Mapping[str, str] = field(default_factory=dict)
    startup_timeout_s: float = 300.0


def repo_root(spec: StackSpec) -> Path:
    return spec.path.resolve().parent.parent


def host_mounts(spec: StackSpec, models: TwinModelDirs, logs: Path) -> tuple[Mount, ...]:
    """Read-only: the Python install, the virtualenv, the repo, the models; the logs rw."""
    paths = [
        Path(sys.base_prefix),
        Path(sys.prefix),
        repo_root(spec),
        models.classifier.resolve().parent,
        models.primary.resolve().parent,
    ]
    paths = [p.resolve() for p in paths]
    # A path inside another mounted path comes along with it.
    keep = [p for p in dict.fromkeys(paths) if not any(q != p and q in p.parents for q in paths)]
    return (*(Mount(str(p), str(p), True) for p in keep), Mount(str(logs), str(logs), False))


def _container_env(env: Mapping[str, str]) -> dict[str, str]:
    """The part of a process backend environment that is not just the harness's own."""
    host = os.environ
    out = {
        k: v
        for k, v in env.items()
        if host.get(k) != v or k in _PASS_KEYS or k.startswith(_PASS_PREFIXES)
    }
    # A minimal PATH that still finds the mounted interpreter.
    out["PATH"] = f"{Path(sys.prefix) / 'bin'}:/usr/local/bin:/usr/bin:/bin"
    out.setdefault("PYTHONUNBUFFERED", "1")
    out["HOME"] = "/root"
    return out


def _listen_anywhere(argv: list[str]) -> list[str]:
    """Inside its own network namespace a server must listen on all interfaces to be published."""
    out = list(argv)
    for i, arg in enumerate(out[:-1]):
        if arg == "--host":
            out[i + 1] = "0.0.0.0"
    return out


def twin_plans(
    spec: StackSpec,
    twin: TwinInputs,
    run_dir: Path,
    run_id: str,
    api_key: str,
    notes: list[str],
    image: str = BASE_IMAGE,
) -> list[ContainerPlan]:
    """Every twin container in start order: engines, the fake xAI, the ai-router."""
    logs = (run_dir / "logs").resolve()
    proc = ProcessBackend(
        spec=spec,
        plan=twin.plan,
        models=twin.models,
        run_dir=run_dir.resolve(),
        kv_overrides=dict(twin.kv_overrides),
        router_env=dict(twin.router_env),
        startup_timeout_s=twin.startup_timeout_s,
    )
    # The stack the argv builders read upstream URLs from: in-network names, not 127.0.0.1.
    inner = Stack("twin-docker", spec, run_dir, api_key=api_key)
    mounts = host_mounts(spec, twin.models, logs)
    plans: list[ContainerPlan] = []
    for order, name in enumerate(proc.service_order()):
        log = logs / f"{name}.log"
        if name == XAI_SERVICE:
            handle, argv, env = proc._xai(name, XAI_PORT, log)
            port, role, budget, model = XAI_PORT, "xai", 60.0, None
        else:
            svc = spec.services[name]
            role, budget = svc.role, min(startup_budget(svc), twin.startup_timeout_s)
            if role == "router":
                port = ROUTER_PORT
                handle, argv, env = proc._router(inner, svc, port, log)
                env["ROUTER_BIND"] = f"0.0.0.0:{port}"
            else:
                port = ENGINE_PORT
                handle, argv, env = proc._engine(inner, svc, port, log)
            model = handle.model_name
        svc_spec = spec.services.get(name)
        inner.services[name] = ServiceHandle(name, handle.role, f"http://{name}:{port}")
        env = _container_env(env)
        plans.append(
            ContainerPlan(
                service=name,
                role=role,
                name=container_name(run_id, name),
                image=image,
                command=tuple(_listen_anywhere(argv)),
                environment=env,
                secret_keys=frozenset(k for k in env if is_secret_name(k)),
                mounts=mounts,
                ports=(port,),
                health_port=port,
                startup_budget_s=budget,
                aliases=(name,),
                labels={**run_labels(run_id), SERVICE_LABEL: name, ORDER_LABEL: str(order)},
                working_dir=str(repo_root(spec)),
                # As the compose file says: vLLM's workers share memory through /dev/shm.
                ipc_mode=svc_spec.ipc if svc_spec else None,
                shm_size=svc_spec.shm_size if svc_spec else None,
                model_name=model,
            )
        )
    notes.extend(inner.notes)
    return plans
