"""Hand-written inline SVG charts for report.html: bars, lines, grids and stacked bars.

Each function returns one `<svg>` element as a string with an `id` and a `<title>`, sized by
its viewBox so it scales with the page. Every piece of text goes through `esc`. No script, no
external resource, no xmlns (inline SVG in HTML needs none). The text helpers the report's
sections share (`esc`, `fmt`, `table`, `md_table`, `slug`) live here too.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Sequence

from harness.units import number

# Paul Tol's "bright" scheme: distinguishable for the colour-blind, fine in grey print.
PALETTE = ("#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb")
AXIS = "#555"
GRID = "#e3e3e3"
LIMIT = "#cc3311"  # SLO limit lines
FONT = 'font-family="system-ui, sans-serif"'

Point = tuple[float, float]
Cell = tuple[str, str]  # (text, fill colour)
NUMERIC = re.compile(r"^[-+]?[\d,.]+(e[-+]?\d+)?( ?(%|s|GiB|/ ?\d+))?$")


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def table(head: Sequence[str], rows: Sequence[Sequence[object]], cls: Sequence[str] = ()) -> str:
    """An HTML table; cells that read as numbers are right-aligned (class `n`)."""
    out = ["<table><tr>", *(f"<th>{esc(h)}</th>" for h in head), "</tr>"]
    for i, r in enumerate(rows):
        c = f' class="{esc(cls[i])}"' if i < len(cls) and cls[i] else ""
        out.append(f"<tr{c}>" + "".join(_td(x) for x in r) + "</tr>")
    return "".join(out) + "</table>"


def md_table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """The same table for report.md, a line per row; a cell's own '|' reads as '/'."""
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return out + [
        "| " + " | ".join("-" if c is None else str(c).replace("|", "/") for c in r) + " |"
        for r in rows
    ]


def _td(x: object) -> str:
    text = "-" if x is None else str(x)
    return f'<td class="n">{esc(text)}</td>' if NUMERIC.match(text) else f"<td>{esc(text)}</td>"


def slug(text: str) -> str:
    """`text` as a piece of an element id."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-").lower() or "x"


def fmt(v: float | None, digits: int = 3) -> str:
    """Compact number: 3 significant digits, thousands separators, no exponent (units.number)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return number(v, digits)


def nice_ticks(hi: float, n: int = 5) -> list[float]:
    """0 .. a round number >= hi, in about n steps of 1, 2 or 5 times a power of ten."""
    if hi <= 0 or math.isnan(hi):
        return [0.0, 1.0]
    raw = hi / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    count = math.ceil(hi / step - 1e-9)
    return [round(i * step, 12) for i in range(count + 1)]


def _open(plot_id: str, title: str, w: int, h: int) -> list[str]:
    return [
        f'<svg id="{esc(plot_id)}" class="plot" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
        f'role="img" aria-labelledby="{esc(plot_id)}-title" {FONT} font-size="11">',
        f'<title id="{esc(plot_id)}-title">{esc(title)}</title>',
        f'<text x="{w / 2:.0f}" y="16" text-anchor="middle" font-size="13" '
        f'font-weight="600">{esc(title)}</text>',
    ]


def _text(x: float, y: float, s: object, anchor: str = "middle", extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{extra}>{esc(s)}</text>'


def blend(colour: str, share: float) -> str:
    """`colour` (#rrggbb) mixed with white: share 1 is the colour, 0 is white."""
    rgb = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(255 - (255 - c) * share):02x}" for c in rgb)


def ink(fill: str) -> str:
    """Black or white text, whichever reads better on `fill` (#rrggbb)."""
    if not (fill.startswith("#") and len(fill) == 7):
        return "#000"
    r, g, b = (int(fill[i : i + 2], 16) for i in (1, 3, 5))
    return "#000" if 0.299 * r + 0.587 * g + 0.114 * b > 150 else "#fff"


def _legend(
    items: Sequence[tuple[str, str]],
    x: float,
    y: float,
    max_x: float = 10_000,
    dashed: Sequence[str] = (),
) -> tuple[str, int]:
    """Legend entries left to right, wrapping at `max_x`; (svg, number of lines)."""
    parts = []
    x0, lines = x, 1
    for label, colour in items:
        step = 28 + 6.2 * len(label)
        if x > x0 and x + step - 12 > max_x:
            x, y, lines = x0, y + 15, lines + 1
        if label in dashed:
            mark = (
                f'<line x1="{x:.1f}" y1="{y - 4:.1f}" x2="{x + 12:.1f}" y2="{y - 4:.1f}" '
                f'stroke="{colour}" stroke-width="2" stroke-dasharray="4 3"/>'
            )
        else:
            mark = f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="12" height="10" fill="{colour}"/>'
        parts.append(mark + _text(x + 16, y, label, "start"))
        x += step
    return "".join(parts), lines


def _y_axis(
    ticks: Sequence[float], left: float, right: float, top: float, bottom: float, unit: str
) -> list[str]:
    out = []
    hi = ticks[-1] or 1.0
    for t in ticks:
        y = bottom - (bottom - top) * t / hi
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="{GRID}"/>')
        out.append(_text(left - 6, y + 4, fmt(t), "end"))
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="{AXIS}"/>')
    out.append(f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="{AXIS}"/>')
    if unit:
        out.append(_text(12, (top + bottom) / 2, unit, extra=_rotate(12, (top + bottom) / 2)))
    return out


def _rotate(x: float, y: float, angle: int = -90) -> str:
    return f' transform="rotate({angle} {x:.1f} {y:.1f})"'


def bar_chart(
    plot_id: str,
    title: str,
    groups: Sequence[tuple[str, Sequence[float | None]]],
    series: Sequence[str],
    unit: str = "",
    width: int | None = None,
    height: int = 300,
    limits: Sequence[float | None] = (),
    limit_label: str = "limit",
) -> str:
    """Grouped vertical bars: one group per label, one bar per series (e.g. p50, p95, p99).

    Labels like `steady/local` print `local` under the group and `steady` once under the run
    of groups that share it. `limits`, one per group: a dashed red line across the group at
    that value (`limit_label` in the legend), e.g. the route's p95 SLO."""
    width = width or min(1140, max(560, 110 * len(groups)))
    left, right, top, bottom = 60, width - 12, 44, height - 46
    values = [v for _, vs in groups for v in vs if v is not None]
    values += [v for v in limits if v is not None]
    ticks = nice_ticks(max(values, default=0.0))
    out = _open(plot_id, title, width, height)
    out += _y_axis(ticks, left, right, top, bottom, unit)
    colours = [(s, PALETTE[i % len(PALETTE)]) for i, s in enumerate(series)]
    if any(v is not None for v in limits):
        colours.append((limit_label, LIMIT))
    out.append(_legend(colours, left + 4, 34, dashed=(limit_label,))[0])
    colours = colours[: len(series)]
    slot = (right - left) / max(1, len(groups))
    bar = min(36.0, slot * 0.8 / max(1, len(series)))
    outer: list[tuple[str, int, int]] = []  # (outer label, first group, last group)
    for g, (label, vs) in enumerate(groups):
        x0 = left + g * slot + (slot - bar * len(series)) / 2
        for i, v in enumerate(vs):
            x = x0 + i * bar
            if v is None:
                out.append(_text(x + bar / 2, bottom - 4, "n/a", extra=' font-size="9"'))
                continue
            h = (bottom - top) * v / (ticks[-1] or 1.0)
            out.append(
                f'<rect x="{x:.1f}" y="{bottom - h:.1f}" width="{bar - 1:.1f}" height="{h:.1f}" '
                f'fill="{colours[i][1]}"><title>{esc(f"{label} {series[i]}: {fmt(v)} {unit}")}'
                "</title></rect>"
            )
            if len(fmt(v)) * 5.4 <= bar + 2:
                out.append(_text(x + bar / 2, bottom - h - 3, fmt(v), extra=' font-size="9"'))
        limit = limits[g] if g < len(limits) else None
        if limit is not None:
            y = bottom - (bottom - top) * limit / (ticks[-1] or 1.0)
            out.append(
                f'<line class="limit" x1="{left + g * slot + 2:.1f}" y1="{y:.1f}" '
                f'x2="{left + (g + 1) * slot - 2:.1f}" y2="{y:.1f}" stroke="{LIMIT}" '
                f'stroke-width="2" stroke-dasharray="6 3"><title>'
                f"{esc(f'{label} {limit_label}: {fmt(limit)} {unit}')}</title></line>"
            )
        head, _, tail = label.rpartition("/")
        out.append(_text(left + (g + 0.5) * slot, bottom + 15, tail))
        if outer and outer[-1][0] == head:
            outer[-1] = (head, outer[-1][1], g)
        else:
            outer.append((head, g, g))
    for head, first, last in outer:
        if head:
            x1, x2 = left + first * slot + 4, left + (last + 1) * slot - 4
            out.append(f'<path d="M{x1:.1f} {bottom + 21} H{x2:.1f}" stroke="{GRID}"/>')
            out.append(_text((x1 + x2) / 2, bottom + 34, head, extra=' font-weight="600"'))
    out.append("</svg>")
    return "".join(out)


def line_chart(
    plot_id: str,
    title: str,
    series: Sequence[tuple[str, Sequence[Point]]],
    *,
    unit: str = "",
    x_unit: str = "s",
    y_max: float | None = None,
    y_min: float = 0.0,
    hlines: Sequence[tuple[float, str]] = (),
    x_labels: Sequence[str] | None = None,
    y_fmt: Callable[[float], str] = fmt,
    width: int = 372,
    height: int = 230,
    bands: Sequence[tuple[float, float, str]] = (),
) -> str:
    """Lines over x; dashed horizontal reference lines; with `x_labels`, x is a run index;
    `bands` (x from, x to, label) shade stretches of x behind the lines."""
    items = [(label, PALETTE[i % len(PALETTE)]) for i, (label, _) in enumerate(series)]
    items += [(label, AXIS) for _, label in hlines]
    legend, lines = _legend(items, 40, 34, width - 8, [label for _, label in hlines])
    left, right = 52, width - 14
    top, bottom = 36 + 15 * lines, height - (56 if x_labels else 30) + 15 * (lines - 1)
    height += 15 * (lines - 1)
    ys = [y for _, pts in series for _, y in pts] + [y for y, _ in hlines]
    xs = [x for _, pts in series for x, _ in pts]
    hi = y_max if y_max is not None else max(ys, default=0.0)
    ticks = [y_min + t for t in nice_ticks(hi - y_min if hi > y_min else 1.0, 4)]
    x_lo, x_hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if x_labels is not None:
        x_lo, x_hi = -0.5, len(x_labels) - 0.5
    span = (x_hi - x_lo) or 1.0

    def px(x: float) -> float:
        return left + (right - left) * (x - x_lo) / span

    def py(y: float) -> float:
        return bottom - (bottom - top) * (y - y_min) / ((ticks[-1] - y_min) or 1.0)

    out = _open(plot_id, title, width, height)
    for t in ticks:
        y = py(t)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="{GRID}"/>')
        out.append(_text(left - 5, y + 4, y_fmt(t), "end"))
    for a, b, label in bands:
        x0, x1 = px(a), max(px(b), px(a) + 2)
        out.append(
            f'<rect class="band" x="{x0:.1f}" y="{top}" width="{x1 - x0:.1f}" '
            f'height="{bottom - top}" fill="{blend(LIMIT, 0.18)}">'
            f"<title>{esc(label)}</title></rect>"
        )
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="{AXIS}"/>')
    out.append(f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="{AXIS}"/>')
    if unit:
        out.append(_text(12, (top + bottom) / 2, unit, extra=_rotate(12, (top + bottom) / 2)))
    if x_labels is not None:
        for i, label in enumerate(x_labels):
            x = px(i)
            out.append(_text(x, bottom + 12, label, "end", _rotate(x, bottom + 12, -30)))
    else:
        xt = [t for t in nice_ticks(x_hi - x_lo, 4) if t <= span + 1e-9]
        for k, t in enumerate(xt):
            text = fmt(t) + (f" {x_unit}" if k == len(xt) - 1 else "")
            out.append(_text(px(x_lo + t), bottom + 14, text))
    for (label, pts), (_, colour) in zip(series, items, strict=False):
        if not pts:
            continue
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        out.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.6">'
            f"<title>{esc(label)}</title></polyline>"
        )
        if x_labels is not None:
            out += [
                f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}">'
                f"<title>{esc(f'{x_labels[int(x)]} {label}: {y_fmt(y)}')}</title></circle>"
                for x, y in pts
            ]
    for y, label in hlines:
        out.append(
            f'<line class="ref" x1="{left}" y1="{py(y):.1f}" x2="{right}" y2="{py(y):.1f}" '
            f'stroke="{AXIS}" stroke-width="1.4" stroke-dasharray="6 4"><title>{esc(label)}'
            "</title></line>"
        )
    out.append(legend)
    out.append("</svg>")
    return "".join(out)


def grid(
    plot_id: str,
    title: str,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    cells: Sequence[Sequence[Cell | None]],
    *,
    legend: Sequence[tuple[str, str]] = (),
    corner: str = "",
    cell_w: int = 96,
    cell_h: int = 30,
) -> str:
    """A matrix of coloured cells with text: confusion matrices, pass/fail matrices."""
    label_w = max([len(r) for r in row_labels] + [len(corner), 6]) * 7 + 16
    width = max(label_w + cell_w * len(col_labels) + 12, 320)
    legend_svg, lines = _legend(legend, 8, 36, width - 8) if legend else ("", 0)
    top = 40 + 15 * lines
    height = top + cell_h * (len(row_labels) + 1) + 12
    out = _open(plot_id, title, width, height)
    out.append(legend_svg)
    if corner:
        out.append(_text(label_w - 8, top + cell_h * 0.65, corner, "end", ' fill="#777"'))
    for j, c in enumerate(col_labels):
        x = label_w + (j + 0.5) * cell_w
        out.append(_text(x, top + cell_h * 0.65, c, extra=' font-weight="600"'))
    for i, r in enumerate(row_labels):
        y = top + cell_h * (i + 1)
        out.append(_text(label_w - 8, y + cell_h * 0.62, r, "end", ' font-weight="600"'))
        for j in range(len(col_labels)):
            cell = cells[i][j] if j < len(cells[i]) else None
            x = label_w + j * cell_w
            fill, text = ("#f4f4f4", "") if cell is None else (cell[1], cell[0])
            tip = esc(f"{r} / {col_labels[j]}: {text}")
            out.append(
                f'<rect x="{x + 1}" y="{y + 1}" width="{cell_w - 2}" height="{cell_h - 2}" '
                f'fill="{fill}" rx="3"><title>{tip}</title></rect>'
            )
            out.append(_text(x + cell_w / 2, y + cell_h * 0.62, text, extra=f' fill="{ink(fill)}"'))
    out.append("</svg>")
    return "".join(out)


def stacked_bars(
    plot_id: str,
    title: str,
    rows: Sequence[tuple[str, Sequence[tuple[str, float, str]], float | None]],
    scale: float,
    *,
    value_fmt: Callable[[float], str] = fmt,
    scale_label: str = "scale",
    width: int = 900,
    bracket_label: str = "budget",
) -> str:
    """Horizontal stacked bars on one common scale; the third item of a row draws a bracket
    (e.g. an engine's budget) at that value, named `bracket_label`. Segment text is shown
    where it fits."""
    seen: dict[str, str] = {}
    for _, segs, _ in rows:
        for name, _, colour in segs:
            seen.setdefault(name, colour)
    left, right, row_h = 130, width - 16, 40
    legend, lines = _legend(list(seen.items()), 8, 36, width - 8)
    top = 30 + 15 * lines
    height = top + row_h * len(rows) + 26
    out = _open(plot_id, title, width, height)
    out.append(legend)
    k = (right - left) / (scale or 1.0)
    for i, (label, segs, bracket) in enumerate(rows):
        y = top + i * row_h + 6
        out.append(_text(left - 8, y + 17, label, "end", ' font-weight="600"'))
        out.append(
            f'<rect x="{left}" y="{y}" width="{right - left:.1f}" height="24" fill="none" '
            f'stroke="{GRID}"/>'
        )
        x = float(left)
        for name, value, colour in segs:
            w = max(0.0, value * k)
            tip = esc(f"{label} {name}: {value_fmt(value)}")
            out.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="24" fill="{colour}" '
                f'stroke="#fff" stroke-width="0.5"><title>{tip}</title></rect>'
            )
            text = value_fmt(value)
            if w > 6.2 * len(text) + 6:
                fill = f' fill="{ink(colour)}" font-size="10"'
                out.append(_text(x + w / 2, y + 16, text, extra=fill))
            x += w
        if bracket is not None:
            bx = left + bracket * k
            out.append(
                f'<path d="M{bx:.1f} {y - 4} v32" stroke="#000" stroke-width="2">'
                f"<title>{esc(f'{label} {bracket_label}: {value_fmt(bracket)}')}</title></path>"
            )
            out.append(_text(bx + 6, y + 16, f"{bracket_label} {value_fmt(bracket)}", "start"))
    out.append(_text(right, height - 8, f"{scale_label}: {value_fmt(scale)}", "end"))
    out.append("</svg>")
    return "".join(out)
