"""A background sampler: both engines' /metrics (and NVML where present) every 250 ms.

It keeps a timeline of gauges and counters, plus the first and last full scrape of each engine
so histogram deltas (TTFT, ITL) cover exactly the sampled window.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from harness.telemetry.prom import KV_USAGE, Scrape, parse

WAITING_BY_REASON = "vllm:num_requests_waiting_by_reason"


def timeline_row(t: float, engine: str, s: Scrape) -> dict[str, Any]:
    return {
        "t": round(t, 3),
        "engine": engine,
        "kv_usage": s.value(KV_USAGE),
        "running": s.value("vllm:num_requests_running"),
        "waiting": s.value("vllm:num_requests_waiting"),
        "waiting_capacity": s.value(WAITING_BY_REASON, reason="capacity"),
        "waiting_deferred": s.value(WAITING_BY_REASON, reason="deferred"),
        "preemptions": s.value("vllm:num_preemptions_total"),
        "prompt_tokens": s.value("vllm:prompt_tokens_total"),
        "generation_tokens": s.value("vllm:generation_tokens_total"),
    }


@dataclass
class Sampler:
    """Scrapes `engines` (name -> base URL) every `interval_s` seconds in a daemon thread."""

    engines: Mapping[str, str]
    interval_s: float = 0.25
    nvml: bool = True
    rows: list[dict[str, Any]] = field(default_factory=list)
    gpu_rows: list[dict[str, Any]] = field(default_factory=list)
    first: dict[str, Scrape] = field(default_factory=dict)
    last: dict[str, Scrape] = field(default_factory=dict)
    errors: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self._client = httpx.Client(timeout=2.0)
        self._sample()  # the window starts with a full scrape of every engine
        self._thread = threading.Thread(target=self._run, name="harness-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._sample()
        self._client.close()

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            next_at += self.interval_s
            self._sample()
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _sample(self) -> None:
        now = time.time()
        for name, url in self.engines.items():
            try:
                r = self._client.get(url.rstrip("/") + "/metrics")
                r.raise_for_status()
            except httpx.HTTPError:
                self.errors += 1
                continue
            s = parse(r.text)
            self.first.setdefault(name, s)
            self.last[name] = s
            self.rows.append(timeline_row(now, name, s))
        if self.nvml:
            self._sample_gpu(now)

    def _sample_gpu(self, now: float) -> None:
        from harness.telemetry.nvml import nvml_errors, snapshot

        try:
            snap = snapshot(0)
        except nvml_errors():  # no GPU, no library: sample engines only from now on
            self.nvml = False
            return
        self.gpu_rows.append(
            {"t": round(now, 3), "used_bytes": snap.used_bytes, "util_gpu_pct": snap.util_gpu_pct}
        )

    def histogram_window(self, engine: str, base: str | tuple[str, ...]) -> dict[float, float]:
        """Bucket deltas of a histogram between the first and last scrape of `engine`."""
        names = (base,) if isinstance(base, str) else base
        for name in names:
            after = self.last.get(engine, Scrape()).histogram(name)
            if after:
                before = self.first.get(engine, Scrape()).histogram(name)
                return {b: after[b] - before.get(b, 0.0) for b in after}
        return {}

    def counter_window(self, engine: str, name: str) -> tuple[float, float]:
        """(sum, count) deltas of a histogram over the window, for an exact mean."""
        a, b = self.first.get(engine, Scrape()), self.last.get(engine, Scrape())
        return (
            b.value(name + "_sum") - a.value(name + "_sum"),
            b.value(name + "_count") - a.value(name + "_count"),
        )

    def save(self, path: Path) -> None:
        path.write_text("\n".join(json.dumps(r) for r in self.rows) + "\n")
        if self.gpu_rows:
            path.with_name("gpu-timeline.jsonl").write_text(
                "\n".join(json.dumps(r) for r in self.gpu_rows) + "\n"
            )
