"""Fitting a conversation into the classifier's context: token counts and history trimming.

The classifier must hold the whole classification prompt (its system prompt, the chat template,
the conversation) plus room for the label. A conversation that the primary can still serve may
therefore be too long for the classifier. Such a conversation is classified on its most recent
part: the last user message and as much history before it as fits. Counts come from the engine's
own `POST /tokenize` on exactly the messages it will be sent, so the fit is exact, not estimated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

Messages = list[dict[str, str]]

# Joins the head and tail of a message that had to be cut in the middle.
CUT_MARK = "\n...\n"


@dataclass(frozen=True)
class Count:
    tokens: int
    # The engine's max_model_len, where its /tokenize reports one.
    context: int | None


class TokenCounter:
    """Counts prompt tokens through one engine's `POST /tokenize`, as its chat endpoint would."""

    def __init__(self, client: httpx.Client, base_url: str, model: str, timeout_s: float) -> None:
        self._client = client
        self._url = f"{base_url}/tokenize"
        self._model = model
        self._timeout_s = timeout_s

    def prompt(self, text: str) -> Count | None:
        return self._post({"model": self._model, "prompt": text})

    def messages(self, messages: Sequence[dict[str, Any]]) -> Count | None:
        # add_generation_prompt: the chat endpoint renders the assistant header too, and the
        # count must be the prompt the engine will really hold.
        body = {"model": self._model, "messages": list(messages), "add_generation_prompt": True}
        return self._post(body)

    def _post(self, body: dict[str, Any]) -> Count | None:
        try:
            resp = self._client.post(self._url, json=body, timeout=self._timeout_s)
            data = resp.json() if resp.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            data = None
        if not isinstance(data, dict) or not _positive_int(data.get("count")):
            return None
        context = data.get("max_model_len")
        return Count(data["count"], context if _positive_int(context) else None)


def utf8_size(messages: Sequence[dict[str, str]]) -> int:
    return sum(len(m["content"].encode("utf-8")) for m in messages)


def trim(conv: Messages, fits: Callable[[Messages], bool]) -> Messages | None:
    """The longest recent part of a classification conversation that `fits`, or None.

    `conv` is the classification prompt: its system message first, then the turns. The system
    message and the last user message are always kept; earlier turns are kept from the newest
    back, in whole messages, starting at a user message (some chat templates reject a
    conversation that opens with the assistant). When the last user message alone is too long,
    its middle is cut: a question may come before or after a long paste, so both ends stay.
    """
    system, turns = conv[:1], conv[1:]
    if not turns:
        return None
    users = [i for i, m in enumerate(turns) if m["role"] == "user"]
    last = users[-1] if users else len(turns) - 1
    starts = [i for i in users if i < last] + [last]
    # Fitting is monotone in the start: a later start drops turns and only shrinks the prompt.
    lo, hi = 0, len(starts)
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(system + turns[starts[mid] :]):
            hi = mid
        else:
            lo = mid + 1
    if lo < len(starts):
        return system + turns[starts[lo] :]
    return _cut_middle(system, turns[last], fits)


def _cut_middle(
    system: Messages, message: dict[str, str], fits: Callable[[Messages], bool]
) -> Messages | None:
    text = message["content"]

    def shape(keep: int) -> Messages:
        head, tail = keep - keep // 2, keep // 2
        cut = text[:head] + CUT_MARK + (text[len(text) - tail :] if tail else "")
        return [*system, {"role": message["role"], "content": cut}]

    # The largest number of kept characters that fits; the search probes about log2(len) counts.
    lo, hi = 0, len(text) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(shape(mid)):
            lo = mid
        else:
            hi = mid - 1
    return shape(lo) if lo > 0 else None


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
