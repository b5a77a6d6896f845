"""Reading a `Server-Timing` header (W3C Server Timing) into durations by name.

The ai-router sends `classify;dur=12.3, upstream_connect;dur=0.8, upstream_ttfb;dur=45.1,
total;dur=60.2` (its README says what each part spans); a load record keeps these parts per
request. Metrics without a `dur` (a bare name, a `desc` only) carry no duration and are left
out, as is anything malformed: the header is the server's, and a bad one must not fail a run.
"""

from __future__ import annotations

import contextlib

# The ai-router's part names (infra/ai-router/ai_router/timing.py).
CLASSIFY, CONNECT, TTFB, TOTAL = "classify", "upstream_connect", "upstream_ttfb", "total"


def parse_server_timing(header: str | None) -> dict[str, float] | None:
    """{name: milliseconds}; None when there is no header or no duration in it."""
    if not header:
        return None
    out: dict[str, float] = {}
    for metric in _split(header, ","):
        name, *params = (p.strip() for p in _split(metric, ";"))
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() != "dur":
                continue
            with contextlib.suppress(ValueError):
                out[name] = float(value.strip().strip('"'))
            break
    return {k: v for k, v in out.items() if k} or None


def _split(text: str, sep: str) -> list[str]:
    """`text` cut at `sep` outside double quotes (a `desc` may hold either separator)."""
    out, start, quoted = [], 0, False
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            out.append(text[start:i])
            start = i + 1
    return [*out, text[start:]]
