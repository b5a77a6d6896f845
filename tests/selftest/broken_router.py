"""Deliberately broken variants of the reference ai-router, for the acceptance suite's
self-tests. BROKEN_ROUTER_MODE picks the fault:

- always_local: never asks the classifier, answers every request `local` as if classified;
- silent_fallback: falls back when the classifier fails, but says `classified`;
- truncate: classifies only the last message of the conversation.

Served as `gunicorn ... 'broken_router:create_app()'` with this folder on PYTHONPATH.
"""

from __future__ import annotations

import os
from typing import Any

from ai_router import classifier as classifier_module
from ai_router.app import create_app as reference_app
from ai_router.classifier import Classifier, Decision

MODE = os.environ.get("BROKEN_ROUTER_MODE", "")
_classify = Classifier.classify
_messages = classifier_module.classification_messages


def _always_local(self: Classifier, messages: list[dict[str, Any]]) -> Decision:
    return Decision("local", "classified", 0)


def _silent(self: Classifier, messages: list[dict[str, Any]]) -> Decision:
    d = _classify(self, messages)
    return Decision(d.route, "classified", d.classifier_ms)


def _truncated(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    return _messages(messages[-1:])


def create_app() -> Any:
    if MODE == "always_local":
        Classifier.classify = _always_local  # type: ignore[method-assign]
    elif MODE == "silent_fallback":
        Classifier.classify = _silent  # type: ignore[method-assign]
    elif MODE == "truncate":
        classifier_module.classification_messages = _truncated
    else:
        raise RuntimeError(
            f"BROKEN_ROUTER_MODE={MODE!r}: expected always_local, silent_fallback or truncate"
        )
    return reference_app()
