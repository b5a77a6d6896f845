"""Hand-written inline SVG charts for report.html: bars, lines, grids and stacked bars.

Each function returns one `<svg>` element as a string with an `id` and a `<title>`, sized by
its viewBox so it scales with the page. Every piece of text goes through `esc`. No script, no
external resource, no xmlns (inline SVG in HTML needs none).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence

# Paul Tol's "bright" scheme: distinguishable for the colour-blind, fine in grey print.
PALETTE = ("#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb")
AXIS = "#555"
GRID = "#e3e3e3"
FONT = 'font-family="system-ui, sans-serif"'

Point = tuple[float, float]
Cell = tuple[str, str]  # (text, fill colour)


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def fmt(v: float | None, digits: int = 3) -> str:
    """Compact number: 3 significant digits, thousands separators for big ones."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


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


def _legend(items: Sequence[tuple[str, str]], x: float, y: float, dashed: Sequence[str] = ()) -> str:
    parts = []
    for label, colour in items:
        if label in dashed:
            mark = (
                f'<line x1="{x:.1f}" y1="{y - 4:.1f}" x2="{x + 12:.1f}" y2="{y - 4:.1f}" '
                f'stroke="{colour}" stroke-width="2" stroke-dasharray="4 3"/>'
            )
        else:
            mark = f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="12" height="10" fill="{colour}"/>'
        parts.append(mark + _text(x + 16, y, label, "start"))
        x += 28 + 6.2 * len(label)
    return "".join(parts)


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
    width: int = 720,
    height: int = 300,
) -> str:
    """Grouped vertical bars: one group per label, one bar per series (e.g. p50, p95, p99)."""
    left, right, top, bottom = 60, width - 12, 44, height - 52
    values = [v for _, vs in groups for v in vs if v is not None]
    ticks = nice_ticks(max(values, default=0.0))
    out = _open(plot_id, title, width, height)
    out += _y_axis(ticks, left, right, top, bottom, unit)
    colours = [(s, PALETTE[i % len(PALETTE)]) for i, s in enumerate(series)]
    out.append(_legend(colours, left + 4, 34))
    slot = (right - left) / max(1, len(groups))
    bar = min(36.0, slot * 0.8 / max(1, len(series)))
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
            if bar >= 16:
                out.append(_text(x + bar / 2, bottom - h - 3, fmt(v), extra=' font-size="9"'))
        out.append(_text(left + (g + 0.5) * slot, bottom + 16, label))
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
    hlines: Sequence[tuple[float, str]] = (),
    x_labels: Sequence[str] | None = None,
    y_fmt: Callable[[float], str] = fmt,
    width: int = 360,
    height: int = 220,
) -> str:
    """Lines over x; dashed horizontal reference lines; with `x_labels`, x is a run index."""
    left, right, top, bottom = 48, width - 10, 44, height - (56 if x_labels else 34)
    ys = [y for _, pts in series for _, y in pts] + [y for y, _ in hlines]
    xs = [x for _, pts in series for x, _ in pts]
    hi = y_max if y_max is not None else max(ys, default=0.0)
    ticks = nice_ticks(hi if hi > 0 else 1.0, 4)
    x_lo, x_hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if x_labels is not None:
        x_lo, x_hi = -0.5, len(x_labels) - 0.5
    span = (x_hi - x_lo) or 1.0

    def px(x: float) -> float:
        return left + (right - left) * (x - x_lo) / span

    def py(y: float) -> float:
        return bottom - (bottom - top) * y / (ticks[-1] or 1.0)

    out = _open(plot_id, title, width, height)
    for t in ticks:
        y = py(t)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="{GRID}"/>')
        out.append(_text(left - 5, y + 4, y_fmt(t), "end"))
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="{AXIS}"/>')
    out.append(f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="{AXIS}"/>')
    if x_labels is not None:
        for i, label in enumerate(x_labels):
            x = px(i)
            out.append(_text(x, bottom + 12, label, "end", _rotate(x, bottom + 12, -30)))
    else:
        for t in nice_ticks(x_hi - x_lo, 4):
            out.append(_text(px(x_lo + t), bottom + 14, fmt(t)))
        out.append(_text(right, bottom + 28, x_unit, "end"))
    if unit:
        out.append(_text(left, top - 6, unit, "start"))
    items = []
    for i, (label, pts) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        items.append((label, colour))
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
    dashed = []
    for y, label in hlines:
        out.append(
            f'<line class="ref" x1="{left}" y1="{py(y):.1f}" x2="{right}" y2="{py(y):.1f}" '
            f'stroke="{AXIS}" stroke-width="1.4" stroke-dasharray="6 4"><title>{esc(label)}'
            "</title></line>"
        )
        items.append((label, AXIS))
        dashed.append(label)
    out.append(_legend(items, left, 34, dashed))
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
    top = 58 if legend else 40
    width = max(label_w + cell_w * len(col_labels) + 12, 320)
    height = top + cell_h * (len(row_labels) + 1) + 12
    out = _open(plot_id, title, width, height)
    if legend:
        out.append(_legend(legend, 8, 36))
    if corner:
        out.append(_text(label_w - 8, top + cell_h * 0.65, corner, "end", ' fill="#777"'))
    for j, c in enumerate(col_labels):
        out.append(_text(label_w + (j + 0.5) * cell_w, top + cell_h * 0.65, c, extra=' font-weight="600"'))
    for i, r in enumerate(row_labels):
        y = top + cell_h * (i + 1)
        out.append(_text(label_w - 8, y + cell_h * 0.62, r, "end", ' font-weight="600"'))
        for j in range(len(col_labels)):
            cell = cells[i][j] if j < len(cells[i]) else None
            x = label_w + j * cell_w
            fill, text = ("#f4f4f4", "") if cell is None else (cell[1], cell[0])
            out.append(
                f'<rect x="{x + 1}" y="{y + 1}" width="{cell_w - 2}" height="{cell_h - 2}" '
                f'fill="{fill}" rx="3"><title>{esc(f"{r} / {col_labels[j]}: {text}")}</title></rect>'
            )
            out.append(_text(x + cell_w / 2, y + cell_h * 0.62, text))
    out.append("</svg>")
    return "".join(out)


def stacked_bars(
    plot_id: str,
    title: str,
    rows: Sequence[tuple[str, Sequence[tuple[str, float, str]], float | None]],
    scale: float,
    *,
    value_fmt: Callable[[float], str] = fmt,
    width: int = 720,
) -> str:
    """Horizontal stacked bars on one common scale; the third item of a row draws a bracket
    (e.g. an engine's budget) at that value. Segment text is shown where it fits."""
    left, right, top, row_h = 130, width - 16, 52, 40
    height = top + row_h * len(rows) + 26
    out = _open(plot_id, title, width, height)
    seen: dict[str, str] = {}
    for label, segs, _ in rows:
        for name, _, colour in segs:
            seen.setdefault(name, colour)
    out.append(_legend(list(seen.items()), 8, 36))
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
            out.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="24" fill="{colour}">'
                f"<title>{esc(f'{label} {name}: {value_fmt(value)}')}</title></rect>"
            )
            text = value_fmt(value)
            if w > 7 * len(text) + 6:
                out.append(_text(x + w / 2, y + 16, text, extra=' fill="#fff" font-size="10"'))
            x += w
        if bracket is not None:
            bx = left + bracket * k
            out.append(
                f'<path d="M{bx:.1f} {y - 4} v32" stroke="#000" stroke-width="2">'
                f"<title>{esc(f'{label} budget: {value_fmt(bracket)}')}</title></path>"
            )
    out.append(_text(right, top + row_h * len(rows) + 16, f"scale: {value_fmt(scale)}", "end"))
    out.append("</svg>")
    return "".join(out)
