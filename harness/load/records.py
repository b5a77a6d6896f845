"""One JSON line per request of a load run, and reading them back."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RequestRecord:
    user: str  # the locust user class
    target: str  # router | classifier | primary
    intended_start: float  # epoch seconds: when the schedule wanted the request sent
    actual_start: float  # epoch seconds: when it was sent
    status: int  # HTTP status; 0 when no response arrived
    ok: bool
    route: str | None = None
    reason: str | None = None
    classifier_ms: float | None = None
    ttft_s: float | None = None  # from the actual start
    ttft_from_intended_s: float | None = None
    # actual_start - intended_start: how late the client sent it (harness.load.users says
    # when a request is meant to go out). None in records written before it was recorded.
    dispatch_delay_s: float | None = None
    itl_s: list[float] = field(default_factory=list)
    e2e_s: float | None = None
    output_tokens: int | None = None
    prompt_tokens: int | None = None
    error: str | None = None
    request_id: str | None = None  # sent as X-Harness-Request, for pairing with server logs
    worker: str | None = None  # the locust worker that sent it, in a distributed run
    # The route the routing corpus labels the prompt with; None for an unlabelled prompt.
    expected_route: str | None = None
    # The labelled prompt's identity (harness.load.prompts.prompt_key), never its text: the
    # route it gets alone is asked for once after the run (harness.load.routing).
    prompt_key: str | None = None
    # The answer's Server-Timing parts in ms (harness.load.server_timing); None without one.
    server_timing: dict[str, float] | None = None

    @property
    def label(self) -> str:
        return self.route or self.target

    @property
    def tpot_s(self) -> float | None:
        """vLLM bench's TPOT: the decode time spread over the tokens after the first."""
        if not self.output_tokens or self.output_tokens < 2:
            return None
        if self.ttft_s is None or self.e2e_s is None:
            return None
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)


def record_line(record: RequestRecord) -> str:
    # vars(), not asdict(): asdict deep-copies every ITL list, a visible share of the client's
    # CPU per request at a thousand requests a second.
    return json.dumps(vars(record), separators=(",", ":"))


class RecordWriter:
    """Appends records to a JSON-lines file; safe across greenlets and threads. Lines reach the
    file at least every `flush_s` seconds and on close, not one write call per request."""

    def __init__(self, path: Path, flush_s: float = 1.0) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = path.open("a", buffering=1 << 16)
        self._lock = threading.Lock()
        self._flush_s = flush_s
        self._flushed = time.monotonic()

    def write(self, record: RequestRecord) -> None:
        self.write_line(record_line(record))

    def write_line(self, line: str) -> None:
        """One record, already encoded (a distributed run's master gets them so)."""
        with self._lock:
            self._fh.write(line + "\n")
            now = time.monotonic()
            if now - self._flushed >= self._flush_s:
                self._fh.flush()
                self._flushed = now

    def close(self) -> None:
        self._fh.close()


def sort_records(path: Path) -> int:
    """Rewrite `path` ordered by actual start. In a distributed run the master writes the
    records as its workers report them, so the file arrives interleaved. Returns the count."""
    if not path.exists():
        return 0
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    lines.sort(key=lambda ln: float(json.loads(ln)["actual_start"]))
    tmp = path.with_name(path.name + ".sorting")
    tmp.write_text("".join(ln + "\n" for ln in lines))
    tmp.replace(path)
    return len(lines)


def read_records(path: Path) -> list[RequestRecord]:
    out: list[RequestRecord] = []
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        if line.strip():
            data: dict[str, Any] = json.loads(line)
            out.append(RequestRecord(**data))
    return out
