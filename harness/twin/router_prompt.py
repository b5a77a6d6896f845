"""Access to the router's classification prompt module, installed or from the source tree."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

# The reference router lives beside the harness in the repository; in a checkout where the
# ai_router package is not installed, the build imports it from there.
_ROUTER_SRC = Path(__file__).resolve().parents[2] / "infra" / "ai-router"


def classify_prompt_module() -> ModuleType:
    """`ai_router.classify_prompt`, the single definition of what the classifier sees."""
    try:
        return importlib.import_module("ai_router.classify_prompt")
    except ModuleNotFoundError:
        if not _ROUTER_SRC.is_dir():
            raise
        sys.path.insert(0, str(_ROUTER_SRC))
        return importlib.import_module("ai_router.classify_prompt")


def classify_prompt_source() -> bytes:
    """The module's source, which the build hash covers: a prompt change must retrain."""
    path = classify_prompt_module().__file__
    if path is None:
        raise RuntimeError("ai_router.classify_prompt has no source file")
    return Path(path).read_bytes()
