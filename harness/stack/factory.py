"""One place that turns a target name into a backend, for the CLI and the pytest plugin."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from harness.compose import StackSpec
from harness.config import Settings
from harness.config_schema import TARGET_NAMES as TARGETS
from harness.errors import CapabilityError, ConfigError
from harness.stack.attach import AttachBackend
from harness.stack.base import Backend
from harness.stack.process import ProcessBackend
from harness.stack.twin_host import twin_capability, twin_missing, twin_models, twin_router_env
from harness.vram.check import run_check

# The twin host's checks are read from here by the CLI and the stack tests.
__all__ = [
    "make_backend",
    "parse_kv_overrides",
    "twin_capability",
    "twin_missing",
    "twin_models",
    "twin_router_env",
]


def make_backend(
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
    real_xai: bool = False,
) -> Backend:
    """The backend for a target. `replace_running` and `keep_stack` concern the containers
    backend: stop a running production stack for the run (and restore it afterwards unless
    `keep_stack`), and leave the run's containers up (no Ryuk) when `keep_stack`. The ai-router
    talks to the fake xAI on every target unless `real_xai` (paid calls, `--harness-xai`); an
    attached stack's router cannot be changed, so without `real_xai` the run sends it no
    search-routed chat."""
    if target == "attach":
        from harness.compose import load_stack

        return AttachBackend(load_stack(compose), settings, run_dir, real_xai=real_xai)
    if target == "twin":
        why = twin_capability()
        if why:
            raise CapabilityError(f"the CPU twin cannot run: {why}")
        # The GPU configuration's predicted KV capacity is what the twin is given: the same
        # VRAM model `harness check` prints, with the configured card (never this machine's).
        result = run_check(compose, settings)
        return ProcessBackend(
            spec=result.spec,
            plan=result.plan,
            models=twin_models(progress),
            run_dir=run_dir,
            kv_overrides=dict(kv_overrides or {}),
            startup_timeout_s=settings.typed.twin.startup_timeout_s,
            router_env=twin_router_env(settings, router_env),
            progress=progress,
        )
    if target in ("gpu", "twin-docker"):
        from harness.stack.containers.factory import make_containers_backend

        return make_containers_backend(
            target,
            compose,
            settings,
            run_dir,
            kv_overrides=kv_overrides,
            router_env=router_env,
            progress=progress,
            replace_running=replace_running,
            keep_stack=keep_stack,
            real_xai=real_xai,
        )
    raise ConfigError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")


def parse_kv_overrides(items: list[str] | None, spec: StackSpec) -> dict[str, int]:
    """KV capacity overrides for what-if runs: `primary=49152`, or `vllm-primary=1.5x`
    (a multiple of that engine's max-model-len)."""
    out: dict[str, int] = {}
    for item in items or []:
        name, _, value = item.partition("=")
        svc = next((s for s in spec.engines if name in (s.name, s.role)), None)
        if svc is None or not value:
            engines = ", ".join(f"{s.name}/{s.role}" for s in spec.engines)
            raise ConfigError(
                f"--kv-tokens {item!r}: expected ENGINE=TOKENS, ENGINE one of {engines}"
            )
        try:
            if value.endswith("x"):
                assert svc.engine is not None
                out[name] = int(float(value[:-1]) * (svc.engine.max_model_len or 0))
            else:
                out[name] = int(value.replace(",", "").replace("_", ""))
        except ValueError:
            raise ConfigError(f"--kv-tokens {item!r}: {value!r} is not a token count") from None
    return out
