"""Units: memory sizes (parsing owner input, printing GiB the same way everywhere), and the
shares and durations of the console's summary lines."""

from __future__ import annotations

import re

from harness.errors import InputError

GIB = 1024**3
MIB = 1024**2

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kib": 1024,
    "kb": 1000,
    "m": MIB,
    "mib": MIB,
    "mb": 1000**2,
    "g": GIB,
    "gib": GIB,
    "gb": 1000**3,
    "t": 1024**4,
    "tib": 1024**4,
    "tb": 1000**4,
}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str, *, what: str = "size") -> int:
    """Bytes from '96GiB', '80 GB', '81559MiB' or a plain byte count.

    Binary units (GiB, G) are powers of 1024, decimal ones (GB) powers of 1000, as on the
    labels of the tools that print them (nvidia-smi prints MiB).
    """
    m = _SIZE.match(str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise InputError(f"{what}: cannot read {text!r} as a memory size (examples: 96GiB, 80GB)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def gib(n_bytes: float) -> str:
    """'12.34 GiB', the one format the table, the docs and the reports use."""
    return f"{n_bytes / GIB:.2f} GiB"


def percent(fraction: float | None, digits: int = 2) -> str:
    """'0.16 %' from 0.0016; 'n/a' for None: a share as the console's summary lines print it."""
    return "n/a" if fraction is None else f"{fraction * 100:.{digits}f} %"


def millis(value_ms: float | None, digits: int = 1) -> str:
    """'37.1 ms' from 37.1297; 'n/a' for None."""
    return "n/a" if value_ms is None else f"{value_ms:.{digits}f} ms"
