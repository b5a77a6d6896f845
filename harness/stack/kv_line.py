"""An engine's KV capacity: from its startup log, or from /metrics when there is no log.

vLLM 0.32 logs both facts as one line (`vllm/v1/core/kv_cache_utils.py`,
`update_kv_cache_capacity`):
  "%s KV cache size: %s tokens, Maximum concurrency for %s tokens per request: %.2fx"
The first %s is "GPU" on CUDA/ROCm, otherwise the device type in upper case ("CPU"), with
" + host" appended when HiSparse keeps part of the cache in host memory. Other releases log the
same facts as two records, "GPU KV cache size: %s tokens" and then "Maximum concurrency for %s
tokens per request: %.2fx", so each fact is matched on its own.

Where no log can be read (an attached stack), `vllm:cache_config_info` on /metrics carries the
cache config as labels: `kv_cache_size_tokens` (0.32) or `num_gpu_blocks` x `block_size`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from harness.stack.engine_memory import MemoryBreakdown, parse_memory_breakdown

_SIZE = re.compile(r"\b(?P<device>[A-Za-z]+(?: \+ host)?) KV cache size: (?P<tokens>[\d,]+) tokens")
_CONCURRENCY = re.compile(
    r"Maximum concurrency for (?P<len>[\d,]+) tokens per request: (?P<conc>[\d.]+)x"
)
_AVAILABLE = re.compile(r"Available KV cache memory: (?P<gib>-?[\d.]+) GiB")


@dataclass(frozen=True)
class KvLine:
    device: str  # "GPU", "CPU", "GPU + host"; empty when read from /metrics
    tokens: int
    max_model_len: int
    max_concurrency: float
    available_gib: float | None = None
    text: str = ""  # the log line(s) or the labels it was read from
    source: str = "log"  # "log" or "metrics"
    block_size: int | None = None  # known from /metrics only

    @property
    def summary(self) -> str:
        """The facts in vLLM 0.32's one-line wording, whichever form they came from."""
        device = f"{self.device} " if self.device else ""
        line = (
            f"{device}KV cache size: {self.tokens:,} tokens, Maximum concurrency for "
            f"{self.max_model_len:,} tokens per request: {self.max_concurrency:.2f}x"
        )
        return line if self.source == "log" else f"{line} (from /metrics)"


def _line_at(text: str, start: int, end: int) -> str:
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    return text[line_start : line_end if line_end != -1 else None].strip()


def parse_kv_line(text: str) -> KvLine | None:
    """The last KV size in `text` (a log) with the concurrency logged after it, or None."""
    sizes = list(_SIZE.finditer(text))
    if not sizes:
        return None
    size = sizes[-1]
    # A restarted engine appends to the same log: pair the size with its own concurrency.
    conc = _CONCURRENCY.search(text, size.end())
    if conc is None:
        return None
    avail = list(_AVAILABLE.finditer(text))
    size_line = _line_at(text, size.start(), size.end())
    conc_line = _line_at(text, conc.start(), conc.end())
    return KvLine(
        device=size.group("device"),
        tokens=int(size.group("tokens").replace(",", "")),
        max_model_len=int(conc.group("len").replace(",", "")),
        max_concurrency=float(conc.group("conc")),
        available_gib=float(avail[-1].group("gib")) if avail else None,
        text=size_line if size_line == conc_line else f"{size_line}\n{conc_line}",
    )


def _int_label(labels: Mapping[str, str], key: str) -> int | None:
    # Unset config fields are exported as the string "None".
    try:
        return int(labels[key])
    except (KeyError, ValueError):
        return None


def kv_from_cache_config(labels: Mapping[str, str], max_model_len: int) -> KvLine | None:
    """The KV capacity from `vllm:cache_config_info`'s labels (prom.Scrape.cache_config()).

    vLLM's own `kv_cache_size_tokens` wins: it is group-aware, where blocks x block size can be
    wrong for hybrid models. Concurrency is vLLM's `kv_cache_max_concurrency` when exported,
    else tokens / max_model_len.
    """
    block = _int_label(labels, "block_size")
    tokens = _int_label(labels, "kv_cache_size_tokens")
    blocks = _int_label(labels, "num_gpu_blocks")
    if tokens is None and blocks is not None and block is not None:
        tokens = blocks * block
    if tokens is None:
        return None
    try:
        concurrency = float(labels["kv_cache_max_concurrency"])
    except (KeyError, ValueError):
        concurrency = tokens / max_model_len if max_model_len > 0 else 0.0
    shown = ("kv_cache_size_tokens", "num_gpu_blocks", "block_size", "kv_cache_max_concurrency")
    return KvLine(
        device="",
        tokens=tokens,
        max_model_len=max_model_len,
        max_concurrency=concurrency,
        text="vllm:cache_config_info{"
        + ",".join(f'{k}="{labels[k]}"' for k in shown if k in labels)
        + "}",
        source="metrics",
        block_size=block,
    )


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def kv_line_from_log(path: Path) -> KvLine | None:
    text = _read(path)
    return parse_kv_line(text) if text is not None else None


class EngineHandle(Protocol):
    """What `healthy_line` reads and fills: base.ServiceHandle, named by shape because base.py
    imports KvLine from here."""

    name: str
    role: str
    kv: KvLine | None
    memory: MemoryBreakdown | None

    @property
    def time_to_healthy_s(self) -> float | None: ...


def healthy_line(handle: EngineHandle, log: Path) -> str:
    """Read an engine's KV line and memory breakdown into `handle`; the progress line that says
    it is healthy. Without a readable log both stay None and callers use /metrics instead."""
    line = f"{handle.name}: healthy in {handle.time_to_healthy_s or 0:.1f} s"
    if handle.role in ("classifier", "primary"):
        text = _read(log)
        handle.kv = parse_kv_line(text) if text is not None else None
        handle.memory = parse_memory_breakdown(text) if text is not None else None
        if handle.kv:
            line += f"; {handle.kv.summary}"
    return line
