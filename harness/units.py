"""Units: memory sizes (parsing owner input, printing GiB the same way everywhere), and every
number people read: latencies in ms and shares in % with 3 significant digits, counts with
thousands separators, never scientific notation. The report, `harness compare`'s table and the
console all print through these; `--json` and record.json keep the raw values."""

from __future__ import annotations

import math
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


def number(value: float | None, digits: int = 3, *, signed: bool = False) -> str:
    """A number for people: `digits` significant digits, thousands separators, never an
    exponent, no trailing zeros. 0.000415 -> '0.000415', 37.13 -> '37.1', 0.05 -> '0.05',
    315100 -> '315,100', 1234.6 -> '1,235'; 'n/a' for None. `signed` puts '+' before a
    positive number."""
    if value is None:
        return "n/a"
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    sign = "+" if signed and value > 0 else ""
    if value == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    rounded = round(value, decimals)
    if rounded != 0 and math.floor(math.log10(abs(rounded))) > math.floor(math.log10(abs(value))):
        decimals = max(0, decimals - 1)  # 9.996 rounds to 10.0: still 3 digits
    text = f"{rounded:,.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")  # 50 ms, not 50.0 ms
    return sign + ("0" if float(text.replace(",", "")) == 0 else text)


def count(value: float | None) -> str:
    """A whole count with thousands separators: '315,100'; 'n/a' for None."""
    return "n/a" if value is None else f"{float(value):,.0f}"


def percent(fraction: float | None, digits: int = 3, *, signed: bool = False) -> str:
    """'0.165 %' from 0.0016492, '95 %' from 0.95: a share (KV usage, an error or fallback
    rate, an accuracy) in percent, `digits` significant digits; 'n/a' for None."""
    if fraction is None:
        return "n/a"
    return f"{number(fraction * 100, digits, signed=signed)} %"


def points(share_difference: float | None, digits: int = 3) -> str:
    """'2 points' from 0.02: a difference between two shares (an accuracy drop, a rate's
    rise), in percentage points; 'n/a' for None."""
    if share_difference is None:
        return "n/a"
    return f"{number(share_difference * 100, digits)} points"


def millis(value_ms: float | None, digits: int = 3, *, signed: bool = False) -> str:
    """'37.1 ms' from 37.1297, '1,240 ms' from 1238.6; 'n/a' for None."""
    return "n/a" if value_ms is None else f"{number(value_ms, digits, signed=signed)} ms"


def ms(seconds: float | None, digits: int = 3, *, signed: bool = False) -> str:
    """A latency measured in seconds, printed in milliseconds: '681 ms' from 0.680989."""
    return "n/a" if seconds is None else millis(seconds * 1000, digits, signed=signed)
