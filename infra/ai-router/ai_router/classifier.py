"""Ask the classifier engine which route a conversation takes.

A classifier failure must never fail the request: it falls back to the default route. It must
never be silent either, so every fallback carries an explicit cause that reaches the client
(X-Route-Reason), the session log and the process log.

A conversation too long for the classifier's context is classified on its recent part (see
`ai_router.fit`) and marked `classified:trimmed-history`, unless the primary cannot serve it
either: then it is `fallback:context_too_long`, which is what the primary would say.
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
from ai_router.fit import Messages, TokenCounter, trim, utf8_size

log = logging.getLogger("ai_router.classifier")

# Used while the label length is unknown (tokenize failed): generous for any short label.
FALLBACK_MAX_TOKENS = 8

CLASSIFIED = "classified"
TRIMMED = "classified:trimmed-history"

# vLLM's 400 texts for a prompt that leaves no room for output. Measured on vLLM 0.32 (and
# found in its renderers/params.py and sampling_params.py):
# - past max-model-len: "This model's maximum context length is N tokens. However, your prompt
#   contains at least N+1 input tokens, ...";
# - exactly max-model-len: the server clamps max_tokens to max_model_len - prompt_len = 0, then
#   rejects it: "max_tokens must be at least 1, got 0." The router always asks for at least
#   two tokens, so a 0 there can only be that clamp.
# Its engine-side check (v1/engine/input_processor.py), which other versions may reach first,
# says "The decoder prompt (length N) [plus the number of requested output tokens (at least 1)]
# is longer than the maximum model length of N".
_CONTEXT_TOO_LONG_MARKERS = (
    "maximum context length",
    "longer than the maximum model length",
    "max_tokens must be at least 1, got 0",
)


@dataclass(frozen=True)
class Decision:
    route: str
    reason: str
    classifier_ms: int
    # The primary's count of the conversation as sent, where the decision needed one.
    history_tokens: int | None = None
    # The same interval as classifier_ms, unrounded (Server-Timing's classify).
    seconds: float | None = None


@dataclass
class _Counted:
    """What counting one request learned, for its session log line."""

    history_tokens: int | None = None


class _Fallback(Exception):
    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


class _ContextTooLong(_Fallback):
    def __init__(self) -> None:
        super().__init__("context_too_long")


class Classifier:
    def __init__(self, config: Config, client: httpx.Client) -> None:
        self._config = config
        self._client = client
        self._max_tokens: int | None = None
        # The classifier's max_model_len, learned from its /tokenize answers.
        self._context: int | None = None
        self._lock = threading.Lock()
        timeout = config.classifier_timeout_s
        self._counter = TokenCounter(
            client, config.classifier_url, config.classifier_model, timeout
        )
        self._primary = TokenCounter(client, config.primary_url, config.primary_model, timeout)

    def classify(self, messages: list[dict[str, Any]]) -> Decision:
        start = time.monotonic()
        facts = _Counted()
        try:
            route, reason = self._route(messages, facts)
        except _Fallback as fb:
            route, reason = self._config.default_route, f"fallback:{fb.cause}"
        seconds = time.monotonic() - start
        ms = int(seconds * 1000)
        if reason == TRIMMED:
            log.info("classified on trimmed history after %d ms; routing to %s", ms, route)
        elif reason != CLASSIFIED:
            log.warning("classifier %s after %d ms; routing to %s", reason, ms, route)
        return Decision(route, reason, ms, facts.history_tokens, seconds)

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
        count = self._counter.prompt(label)
        if count is None:
            log.warning("classifier /tokenize gave no usable count; using %d", FALLBACK_MAX_TOKENS)
            return None
        self._context = count.context or self._context
        return count.tokens

    def _route(self, messages: list[dict[str, Any]], facts: _Counted) -> tuple[str, str]:
        budget = self.max_tokens()
        conv = classification_messages(messages)
        room = self._room(budget)
        # Text of at most half the room in UTF-8 bytes fits without counting: a token holds at
        # least one byte of text, and no chat template adds anywhere near room/2 tokens. Longer
        # conversations are counted exactly before they are sent.
        counted = room is not None and utf8_size(conv) > room // 2
        if counted:
            self._check_primary(messages, facts)
            if not self._fits(conv, budget):
                return self._ask_trimmed(conv, budget)
        try:
            return self._ask(conv, budget), CLASSIFIED
        except _ContextTooLong:
            # Without a known context size nothing was counted; the engine's 400 says that the
            # conversation does not fit, and a count now (which also reports the context size)
            # tells whether trimming can make it fit.
            if counted or self._fits(conv, budget):
                raise
            self._check_primary(messages, facts)
            return self._ask_trimmed(conv, budget)

    def _room(self, budget: int) -> int | None:
        """The most prompt tokens the classifier holds with room for the label."""
        return None if self._context is None else self._context - budget

    def _fits(self, conv: Messages, budget: int) -> bool:
        """False only when a count says the conversation is too long; an unknown count leaves
        the answer to the engine."""
        count = self._counter.messages(conv)
        if count is None:
            log.warning("classifier /tokenize gave no usable count; the engine judges the length")
            return True
        self._context = count.context or self._context
        room = self._room(budget)
        return room is None or count.tokens <= room

    def _ask_trimmed(self, conv: Messages, budget: int) -> tuple[str, str]:
        room = self._room(budget)
        if room is None:
            raise _ContextTooLong()

        def fits(candidate: Messages) -> bool:
            count = self._counter.messages(candidate)
            return count is not None and count.tokens <= room

        trimmed = trim(conv, fits)
        if trimmed is None:
            raise _ContextTooLong()
        return self._ask(trimmed, budget), TRIMMED

    def _check_primary(self, messages: list[dict[str, Any]], facts: _Counted) -> None:
        """Raise context_too_long unless the primary holds the conversation with room for one
        output token, as it renders it (its own template, the client's system messages).

        A conversation past the primary's limit gets that one reason whether or not the
        classifier could hold it. An unknown count passes: the primary answers for itself."""
        count = self._primary.messages(messages)
        if count is not None:
            facts.history_tokens = count.tokens
        if count is None or count.context is None:
            log.warning("primary /tokenize gave no usable count; classifying regardless")
            return
        if count.tokens >= count.context:
            raise _ContextTooLong()

    def _post_classification(self, payload: dict[str, Any]) -> httpx.Response:
        """The classification request, sent again once when the connection broke before an
        answer came: a pooled keep-alive connection the engine closed as it was reused (or an
        engine restarted behind the same address) says nothing about the engine, and asking
        again at temperature 0 is safe. A timeout is never retried."""
        url = f"{self._config.classifier_url}/v1/chat/completions"
        for attempt in (1, 2):
            try:
                return self._client.post(
                    url, json=payload, timeout=self._config.classifier_timeout_s
                )
            except httpx.TimeoutException:
                raise _Fallback("timeout") from None
            except httpx.TransportError:
                if attempt == 2:
                    raise _Fallback("unreachable") from None
                log.info("classifier connection broke before an answer; asking once more")
            except httpx.HTTPError:
                raise _Fallback("unreachable") from None
        raise _Fallback("unreachable")  # not reached: the loop returns or raises

    def _ask(self, conv: Messages, budget: int) -> str:
        payload = {
            "model": self._config.classifier_model,
            "messages": conv,
            "max_tokens": budget,
            "temperature": 0,
            "structured_outputs": {"choice": list(ROUTES)},
        }
        resp = self._post_classification(payload)
        if resp.status_code >= 500:
            raise _Fallback("classifier_5xx")
        if not resp.is_success:
            # 3xx lands here too: the engine's base URL is wrong, which is no 5xx of its own.
            text = resp.text.lower()
            if resp.status_code == 400 and any(m in text for m in _CONTEXT_TOO_LONG_MARKERS):
                raise _ContextTooLong()
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
