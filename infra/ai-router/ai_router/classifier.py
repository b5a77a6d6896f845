"""Ask the classifier engine which route a conversation takes.

A classifier failure must never fail the request: it falls back to the default route. It must
never be silent either, so every fallback carries an explicit cause that reaches the client
(X-Route-Reason), the session log and the process log.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

from ai_router.classify_prompt import ROUTES, classification_messages
from ai_router.config import Config

log = logging.getLogger("ai_router.classifier")

# Used while the label length is unknown (tokenize failed): generous for any short label.
FALLBACK_MAX_TOKENS = 8

_CONTEXT_TOO_LONG_MARKERS = ("maximum context length", "longer than the maximum model length")


@dataclass(frozen=True)
class Decision:
    route: str
    reason: str
    classifier_ms: int


class _Fallback(Exception):
    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


class Classifier:
    def __init__(self, config: Config, client: httpx.Client) -> None:
        self._config = config
        self._client = client
        self._max_tokens: int | None = None
        self._lock = threading.Lock()

    def classify(self, messages: list[dict[str, Any]]) -> Decision:
        start = time.monotonic()
        try:
            route = self._ask(messages)
            reason = "classified"
        except _Fallback as fb:
            route, reason = self._config.default_route, f"fallback:{fb.cause}"
        ms = int((time.monotonic() - start) * 1000)
        if reason != "classified":
            log.warning("classifier %s after %d ms; routing to %s", reason, ms, route)
        return Decision(route, reason, ms)

    def max_tokens(self) -> int:
        """Room for the longest label plus one token, learned from the classifier's tokenizer.

        Computed once and cached; a failed lookup is not cached so the next request retries.
        The lock keeps concurrent first requests from all tokenizing at once.
        """
        if self._max_tokens is not None:
            return self._max_tokens
        with self._lock:
            if self._max_tokens is None:
                longest = 0
                for label in ROUTES:
                    count = self._token_count(label)
                    if count is None:
                        return FALLBACK_MAX_TOKENS
                    longest = max(longest, count)
                self._max_tokens = longest + 1
            return self._max_tokens

    def _token_count(self, label: str) -> int | None:
        try:
            resp = self._client.post(
                f"{self._config.classifier_url}/tokenize",
                json={"model": self._config.classifier_model, "prompt": label},
                timeout=self._config.classifier_timeout_s,
            )
            count = resp.json().get("count") if resp.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            count = None
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            log.warning("classifier /tokenize gave no usable count; using %d", FALLBACK_MAX_TOKENS)
            return None
        return count

    def _ask(self, messages: list[dict[str, Any]]) -> str:
        payload = {
            "model": self._config.classifier_model,
            "messages": classification_messages(messages),
            "max_tokens": self.max_tokens(),
            "temperature": 0,
            "structured_outputs": {"choice": list(ROUTES)},
        }
        try:
            resp = self._client.post(
                f"{self._config.classifier_url}/v1/chat/completions",
                json=payload,
                timeout=self._config.classifier_timeout_s,
            )
        except httpx.TimeoutException:
            raise _Fallback("timeout") from None
        except httpx.HTTPError:
            raise _Fallback("unreachable") from None
        if resp.status_code >= 500:
            raise _Fallback("classifier_5xx")
        if not resp.is_success:
            # 3xx lands here too: the engine's base URL is wrong, which is no 5xx of its own.
            text = resp.text.lower()
            if resp.status_code == 400 and any(m in text for m in _CONTEXT_TOO_LONG_MARKERS):
                raise _Fallback("context_too_long")
            raise _Fallback("classifier_4xx")
        label = _label(resp)
        if label not in ROUTES:
            raise _Fallback("bad_label")
        return label


def _label(resp: httpx.Response) -> str | None:
    try:
        content = resp.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return content.strip() if isinstance(content, str) else None
