"""The engine's startup KV line, e.g.
`CPU KV cache size: 49,152 tokens, Maximum concurrency for 32,768 tokens per request: 1.50x`.

Format string in vLLM: "%s KV cache size: %s tokens, Maximum concurrency for %s tokens per
request: %.2fx" (vllm-facts.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # base.py imports KvLine from here
    from harness.stack.base import ServiceHandle

_KV = re.compile(
    r"(?P<device>GPU|CPU|XPU|TPU) KV cache size: (?P<tokens>[\d,]+) tokens, Maximum concurrency "
    r"for (?P<len>[\d,]+) tokens per request: (?P<conc>[\d.]+)x"
)
_AVAILABLE = re.compile(r"Available KV cache memory: (?P<gib>[\d.]+) GiB")


@dataclass(frozen=True)
class KvLine:
    device: str
    tokens: int
    max_model_len: int
    max_concurrency: float
    available_gib: float | None = None
    text: str = ""


def parse_kv_line(text: str) -> KvLine | None:
    """The last KV line in `text` (a log), or None."""
    matches = list(_KV.finditer(text))
    if not matches:
        return None
    m = matches[-1]
    avail = list(_AVAILABLE.finditer(text))
    line_start = text.rfind("\n", 0, m.start()) + 1
    line_end = text.find("\n", m.end())
    return KvLine(
        device=m.group("device"),
        tokens=int(m.group("tokens").replace(",", "")),
        max_model_len=int(m.group("len").replace(",", "")),
        max_concurrency=float(m.group("conc")),
        available_gib=float(avail[-1].group("gib")) if avail else None,
        text=text[line_start : line_end if line_end != -1 else None].strip(),
    )


def kv_line_from_log(path: Path) -> KvLine | None:
    try:
        return parse_kv_line(path.read_text(errors="replace"))
    except OSError:
        return None


def healthy_line(handle: ServiceHandle, log: Path) -> str:
    """Read an engine's KV line into `handle.kv`; the progress line that says it is healthy."""
    line = f"{handle.name}: healthy in {handle.time_to_healthy_s or 0:.1f} s"
    if handle.role in ("classifier", "primary"):
        handle.kv = kv_line_from_log(log)
        if handle.kv:
            line += f"; {handle.kv.text.split('] ')[-1]}"
    return line
