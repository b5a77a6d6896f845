"""The containers backend for `make_backend`: capability checks first, then the inputs each
target needs. Both targets run the same backend on the same gpu plans; `twin-docker` (the
emulated GPU) adds the substitutions' inputs and reads a recorded card instead of NVML."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from harness.compose import load_stack
from harness.config import Settings
from harness.errors import CapabilityError
from harness.stack.containers.backend import (
    ContainersBackend,
    container_capability,
    docker_client,
)
from harness.stack.containers.emulate import Emulation, Runtime
from harness.stack.twin_host import twin_capability, twin_router_env
from harness.telemetry.recorded_card import recorded_card
from harness.twin.engines import TwinModelDirs
from harness.vram.check import run_check


def make_containers_backend(
    target: str,
    compose: Path,
    settings: Settings,
    run_dir: Path,
    *,
    kv_overrides: Mapping[str, int] | None = None,
    router_env: Mapping[str, str] | None = None,
    progress: Callable[[str], None] = print,
    replace_running: bool = False,
    keep_stack: bool = False,
    include_edge: bool = False,
    real_xai: bool = False,
) -> ContainersBackend:
    gpu = target == "gpu"
    # gpu: the probe runs the compose file's own vLLM image with the engines' device request.
    engine = load_stack(compose).primary if gpu else None
    why = container_capability(
        gpu=gpu, image=engine.image if engine else None, devices=engine.devices if engine else ()
    )
    if why:
        raise CapabilityError(f"the {target} target cannot run: {why}")
    common = {
        "run_dir": run_dir,
        "target": target,
        "include_edge": include_edge,
        "replace_running": replace_running,
        "keep_stack": keep_stack,
        "progress": progress,
        "real_xai": real_xai,
    }
    if gpu:
        from harness.telemetry.nvml import total_memory_or_none

        # The live preflight compares with the card as it is: budgets from its real total.
        result = run_check(compose, settings, nvml_total=total_memory_or_none())
        return ContainersBackend(spec=result.spec, vram_plan=result.plan, **common)  # type: ignore[arg-type]
    from harness.stack.containers.twin_weights import (
        runtime_from_env,
        volume_archs,
        volume_models,
    )

    # As for `twin`: the KV capacity comes from the configured card's VRAM model, and the
    # recorded card the preflight reads has that size.
    result = run_check(compose, settings)
    total = result.plan.assumptions.total_bytes
    runtime = runtime_from_env()
    if runtime is not None:
        # A GPU-box install: the twin's runtime comes from elsewhere, its models from the volume.
        models, in_volume = volume_models(result.spec), True
        archs = volume_archs(docker_client(), result.spec)
    else:
        from harness.twin.build import build_twin

        why = twin_capability()
        if why:
            raise CapabilityError(f"the twin-docker target cannot run: {why}")
        built = build_twin(progress=progress)
        models, in_volume = TwinModelDirs(built.classifier_dir, built.primary_dir), False
        runtime, archs = Runtime.current(), {}
    emulation = Emulation(
        plan=result.plan,
        models=models,
        kv_overrides=dict(kv_overrides or {}),
        router_env=twin_router_env(settings, router_env),
        startup_timeout_s=settings.typed.twin.startup_timeout_s,
        runtime=runtime,
        weights_in_volume=in_volume,
        archs=archs,
    )
    return ContainersBackend(
        spec=result.spec,
        vram_plan=result.plan,
        emulation=emulation,
        gpu_snapshot=lambda: recorded_card(total),
        **common,  # type: ignore[arg-type]
    )
