"""The fake xAI's fault knobs and recorded requests, shared by its handler threads."""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, replace
from http import HTTPStatus
from pathlib import Path
from typing import Any

from harness.fakes.xai.responses import Json, is_int

MODES = ("ok", "timeout", "empty_length", "status")
TIMEOUT_MAX_S = 120.0  # how long "timeout" mode holds a request before dropping it unanswered
# xAI answers errors with gRPC-style descriptions in "code".
_ERROR_CODES = {
    400: "Client specified an invalid argument",
    401: "The caller does not have permission to execute the specified operation",
    403: "The caller does not have permission to execute the specified operation",
    404: "Some requested entity was not found",
    429: "Some resource has been exhausted",
    500: "Internal error",
    503: "The service is currently unavailable",
}


@dataclass(frozen=True)
class Faults:
    """Fault knobs for ``POST /v1/responses``.

    ``mode``: ``ok``; ``status`` (answer ``status`` with an xAI-style error; 429 and 503 add
    ``Retry-After: 1``); ``timeout`` (hold the request unanswered for up to ``TIMEOUT_MAX_S``);
    ``empty_length`` (an ``incomplete`` answer that spent every output token on reasoning).
    ``latency_s`` is slept before answering. ``count`` limits the knobs to the next N model
    requests, after which the knobs set without a count apply again; ``None`` means until changed.
    """

    status: int | None = None
    latency_s: float = 0.0
    mode: str = "ok"
    count: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")
        if self.mode == "status" and not (is_int(self.status) and 400 <= self.status <= 599):
            raise ValueError("mode 'status' needs a status between 400 and 599")
        if self.mode != "status" and self.status is not None:
            raise ValueError(f"status only applies to mode 'status', not {self.mode!r}")
        if isinstance(self.latency_s, bool) or not isinstance(self.latency_s, int | float):
            raise ValueError("latency_s must be a number")
        if self.latency_s < 0:
            raise ValueError("latency_s must not be negative")
        if self.count is not None and not (is_int(self.count) and self.count >= 1):
            raise ValueError("count must be a positive integer or null")

    @classmethod
    def of(
        cls,
        status: int | None = None,
        latency_s: float = 0.0,
        mode: str | None = None,
        count: int | None = None,
    ) -> Faults:
        """Build faults; ``mode`` defaults to ``status`` when a status is given, else ``ok``."""
        if mode is None:
            mode = "ok" if status is None else "status"
        return cls(status=status, latency_s=latency_s, mode=mode, count=count)

    @classmethod
    def from_json(cls, data: object) -> Faults:
        """Parse a ``POST /_faults`` body; missing keys take their defaults."""
        if not isinstance(data, dict):
            raise ValueError("faults must be a JSON object")
        unknown = sorted(set(data) - {"status", "latency_s", "mode", "count"})
        if unknown:
            raise ValueError(f"unknown fault keys: {unknown}")
        return cls.of(**data)

    def to_json(self) -> Json:
        return asdict(self)


@dataclass(frozen=True)
class RecordedRequest:
    """One model request as received; the Authorization value is never kept."""

    method: str
    path: str
    headers: dict[str, str]  # lower-cased names, without authorization
    authorization_present: bool
    body: Any  # the parsed JSON body, or None when it did not parse

    def to_json(self) -> Json:
        return asdict(self)


def _error_code(status: int) -> str:
    try:
        return _ERROR_CODES.get(status) or HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class _State:
    """What the handler threads share: recorded requests, fault knobs, settings."""

    def __init__(self, faults: Faults, record_path: Path | None, stream_delay_s: float) -> None:
        self.lock = threading.Lock()
        self.stopping = threading.Event()  # set on shutdown; wakes sleeping handlers
        self.stream_delay_s = stream_delay_s
        self.record_path = record_path
        self.records: list[RecordedRequest] = []
        self.base = Faults()
        self.limited: Faults | None = None  # count-limited knobs, ahead of the base ones
        self.set_faults(faults)

    def set_faults(self, faults: Faults) -> None:
        with self.lock:
            if faults.count is None:
                self.base, self.limited = faults, None
            else:
                self.limited = faults

    def faults(self) -> Faults:
        with self.lock:
            return self.limited or self.base

    def take_faults(self) -> Faults:
        """The knobs for one model request, using up one count of limited ones."""
        with self.lock:
            if self.limited is None or self.limited.count is None:
                return self.base
            current, left = self.limited, self.limited.count - 1
            self.limited = replace(current, count=left) if left else None
            return current

    def record(self, request: RecordedRequest) -> None:
        with self.lock:
            self.records.append(request)
            if self.record_path is not None:
                with self.record_path.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(request.to_json()) + "\n")

    def recorded(self) -> list[Json]:
        with self.lock:
            return [r.to_json() for r in self.records]

    def clear(self) -> int:
        with self.lock:
            cleared = len(self.records)
            self.records.clear()
            return cleared
