"""What the CPU twin needs from this host: its installed modules, its models, and the ai-router
settings it runs with. Both factories (processes and containers) read it."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from harness.config import Settings
from harness.errors import ConfigError
from harness.twin.engines import TwinModelDirs


def twin_missing() -> tuple[str, str] | None:
    """The first module the twin needs that is not installed, and the install that brings it
    (an extra of `make install`), or None when the twin can run."""
    for module, extra in (("vllm", "twin"), ("gunicorn", "twin"), ("ai_router", "infra/ai-router")):
        if importlib.util.find_spec(module) is None:
            return module, extra
    return None


def twin_capability() -> str | None:
    """Why the twin cannot run here, or None when it can."""
    missing = twin_missing()
    if missing is None:
        return None
    module, extra = missing
    return f"{module} is not installed (make install, extra '{extra}')"


def twin_models(progress: Callable[[str], None] = print) -> TwinModelDirs:
    """The twin's models: HARNESS_TWIN_MODELS (a folder with classifier/ and primary/, e.g. a
    build kept from another machine), else `harness twin build`'s output, built if needed."""
    given = os.environ.get("HARNESS_TWIN_MODELS")
    if given:
        dirs = TwinModelDirs(Path(given) / "classifier", Path(given) / "primary")
        for d in (dirs.classifier, dirs.primary):
            if not (d / "config.json").is_file():
                raise ConfigError(f"HARNESS_TWIN_MODELS={given}: {d} holds no model")
        return dirs
    from harness.twin.build import build_twin

    models = build_twin(progress=progress)
    return TwinModelDirs(models.classifier_dir, models.primary_dir)


def twin_router_env(
    settings: Settings, router_env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The twin's ai-router settings beyond the compose file's, for processes and containers."""
    return {
        # A 32k-token prefill on two CPU cores takes seconds to minutes when the machine is
        # busy; the router's 30 s default would turn that into fallbacks.
        "ROUTER_CLASSIFIER_TIMEOUT_S": str(settings.typed.twin.classifier_timeout_s),
        **(router_env or {}),
    }
