"""Deliberately broken variants of the reference ai-router, for the acceptance suite's
self-tests. BROKEN_ROUTER_MODE picks the fault:

- always_local: never asks the classifier, answers every request `local` as if classified;
- silent_fallback: falls back when the classifier fails, but says `classified`;
- truncate: classifies only the last message of the conversation;
- serialise: one upstream call at a time, a global lock held until the answer (or stream) ends;
- drop_log_line: leaves every third line out of the session log.

Served as `gunicorn ... 'broken_router:create_app()'` with this folder on PYTHONPATH.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterator
from typing import Any

from ai_router import classifier as classifier_module
from ai_router.app import create_app as reference_app
from ai_router.classifier import Classifier, Decision
from ai_router.primary import Primary
from ai_router.reply import Reply
from ai_router.request_body import ChatRequest
from ai_router.session_log import SessionLog, SessionRecord
from ai_router.xai import XaiSearch

MODE = os.environ.get("BROKEN_ROUTER_MODE", "")
MODES = ("always_local", "silent_fallback", "truncate", "serialise", "drop_log_line")
_classify = Classifier.classify
_messages = classifier_module.classification_messages
_serve_primary = Primary.serve
_serve_xai = XaiSearch.serve
_write = SessionLog.write
_upstream = threading.Lock()
_writes = itertools.count(1)


def _always_local(self: Classifier, messages: list[dict[str, Any]]) -> Decision:
    return Decision("local", "classified", 0)


def _silent(self: Classifier, messages: list[dict[str, Any]]) -> Decision:
    d = _classify(self, messages)
    return Decision(d.route, "classified", d.classifier_ms)


def _truncated(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    return _messages(messages[-1:])


def _one_at_a_time(serve: Any) -> Any:
    def locked(self: Any, req: ChatRequest) -> Reply:
        _upstream.acquire()
        try:
            reply: Reply = serve(self, req)
        except BaseException:
            _upstream.release()
            raise
        if reply.stream is None:
            _upstream.release()
        else:
            reply.stream = _release_after(reply.stream)
        return reply

    return locked


def _release_after(stream: Iterator[bytes]) -> Iterator[bytes]:
    try:
        yield from stream
    finally:
        _upstream.release()


def _drop_every_third(self: SessionLog, record: SessionRecord) -> None:
    if next(_writes) % 3:
        _write(self, record)


def create_app() -> Any:
    if MODE == "always_local":
        Classifier.classify = _always_local  # type: ignore[method-assign]
    elif MODE == "silent_fallback":
        Classifier.classify = _silent  # type: ignore[method-assign]
    elif MODE == "truncate":
        classifier_module.classification_messages = _truncated
    elif MODE == "serialise":
        Primary.serve = _one_at_a_time(_serve_primary)  # type: ignore[method-assign]
        XaiSearch.serve = _one_at_a_time(_serve_xai)  # type: ignore[method-assign]
    elif MODE == "drop_log_line":
        SessionLog.write = _drop_every_third  # type: ignore[method-assign]
    else:
        raise RuntimeError(f"BROKEN_ROUTER_MODE={MODE!r}: expected one of {', '.join(MODES)}")
    return reference_app()
