"""Capacity over time: what a `harness capacity` run keeps in its history line, and report.html's
capacity trend (`plot-trend-capacity-<profile>`): one point per capacity run of the target,
its interval as an error bar, coloured by the limiting resource, the latest run marked."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from harness.report import svg
from harness.report.svg import esc, slug
from harness.units import number

MIN_RUNS = 2  # a trend needs two points
# One colour per limiting resource (harness.load.capacity's names), the palette's order.
RESOURCE_FILL = {
    "classifier": svg.PALETTE[0],
    "primary slots": svg.PALETTE[1],
    "primary KV pool": svg.PALETTE[5],
    "compute": svg.PALETTE[2],
    "not reached": svg.PALETTE[6],
}


def history_entry(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """The capacity a run measured, for its history line; None for a run that measured none."""
    sec = (doc.get("capacity") or {}).get("result")
    if not sec:
        return None
    k = sec["knee"]
    return {
        "profile": sec["profile"],
        "capacity_rps": k["capacity_rps"],
        "interval_rps": list(k["interval_rps"]),
        "capacity_tok_s": k.get("capacity_tok_s"),
        "interval_tok_s": list(k.get("interval_tok_s") or [None, None]),
        "limiting_resource": k["limiting_resource"],
    }


def runs_by_profile(history: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """The history lines that carry a capacity, per profile, in history order."""
    out: dict[str, list[Mapping[str, Any]]] = {}
    for e in history:
        c = e.get("capacity")
        if isinstance(c, Mapping) and c.get("capacity_rps") is not None:
            out.setdefault(str(c["profile"]), []).append(e)
    return out


def html(
    history: Sequence[Mapping[str, Any]], label: Callable[[str], str] = str
) -> tuple[list[str], list[str]]:
    """(plots, notes): one trend per profile with at least MIN_RUNS capacity runs in `history`
    (x labels: `label` of the run id); a one-line note for each profile with fewer, or for
    none at all."""
    found = runs_by_profile(history)
    plots, notes = [], []
    for profile, runs in found.items():
        if len(runs) >= MIN_RUNS:
            plots.append(plot(profile, runs, label))
        else:
            notes.append(
                f"Capacity trend ({profile}): {len(runs)} capacity run among the last "
                f"{len(history)} runs; a trend needs {MIN_RUNS}."
            )
    if not found:
        notes.append(
            f"Capacity trend: no `harness capacity` run among the last {len(history)} runs of "
            f"this target; a trend needs {MIN_RUNS}."
        )
    return plots, notes


def _tip(e: Mapping[str, Any], latest: bool) -> str:
    c = e["capacity"]
    lo, hi = c["interval_rps"]
    interval = f"{number(lo)}-{number(hi)}" if hi is not None else f"at least {number(lo)}"
    tok = c.get("capacity_tok_s")
    return (
        f"{'latest: ' if latest else ''}{e['run_id']}: {number(c['capacity_rps'])} req/s "
        f"(interval {interval} req/s)"
        + (f", {number(tok)} tok/s" if tok is not None else "")
        + f", limited by {c['limiting_resource']}"
    )


def plot(
    profile: str,
    runs: Sequence[Mapping[str, Any]],
    label: Callable[[str], str] = str,
    width: int = 480,
    height: int = 250,
) -> str:
    """Capacity req/s per run (x: the capacity runs in order, labelled by start), the interval
    as an error bar (open-ended upwards where no rate failed), the point's colour the limiting
    resource, the latest run ringed and labelled."""
    caps = [e["capacity"] for e in runs]
    resources = list(dict.fromkeys(str(c["limiting_resource"]) for c in caps))
    colour = {r: RESOURCE_FILL.get(r, svg.AXIS) for r in resources}
    legend, lines = svg._legend([(r, colour[r]) for r in resources], 40, 34, width - 8)
    left, right = 52, width - 14
    top, bottom = 38 + 15 * lines, height - 56 + 15 * (lines - 1)
    height += 15 * (lines - 1)
    values = [float(v) for c in caps for v in (c["capacity_rps"], *c["interval_rps"]) if v]
    ticks = svg.nice_ticks(max(values, default=1.0) * 1.1, 4)
    step = (right - left) / len(runs)

    def px(i: int) -> float:
        return left + step * (i + 0.5)

    def py(v: float) -> float:
        return bottom - (bottom - top) * v / (ticks[-1] or 1.0)

    out = svg._open(f"plot-trend-capacity-{slug(profile)}", f"{profile}: capacity, last runs",
                    width, height)  # fmt: skip
    for t in ticks:
        out.append(
            f'<line x1="{left}" y1="{py(t):.1f}" x2="{right}" y2="{py(t):.1f}" '
            f'stroke="{svg.GRID}"/>' + svg._text(left - 5, py(t) + 4, svg.fmt(t), "end")
        )
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="{svg.AXIS}"/>')
    out.append(f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="{svg.AXIS}"/>')
    mid = (top + bottom) / 2
    out.append(svg._text(12, mid, "req/s", extra=f' transform="rotate(-90 12 {mid:.1f})"'))
    path = " ".join(f"{px(i):.1f},{py(float(c['capacity_rps'])):.1f}" for i, c in enumerate(caps))
    out.append(
        f'<polyline points="{path}" fill="none" stroke="{svg.AXIS}" stroke-width="1.2">'
        "<title>capacity req/s</title></polyline>"
    )
    last = len(runs) - 1
    for i, (e, c) in enumerate(zip(runs, caps, strict=True)):
        x, fill, tip = px(i), colour[str(c["limiting_resource"])], esc(_tip(e, i == last))
        lo, hi = c["interval_rps"]
        y_hi = py(float(hi)) if hi is not None else top
        dash = "" if hi is not None else ' stroke-dasharray="3 2"'
        out.append(
            f'<g class="interval"><title>{tip}</title>'
            f'<line x1="{x:.1f}" y1="{py(float(lo)):.1f}" x2="{x:.1f}" y2="{y_hi:.1f}" '
            f'stroke="{fill}" stroke-width="1.5"{dash}/>'
            f'<line x1="{x - 4:.1f}" y1="{py(float(lo)):.1f}" x2="{x + 4:.1f}" '
            f'y2="{py(float(lo)):.1f}" stroke="{fill}" stroke-width="1.5"/>'
            + (
                f'<line x1="{x - 4:.1f}" y1="{y_hi:.1f}" x2="{x + 4:.1f}" y2="{y_hi:.1f}" '
                f'stroke="{fill}" stroke-width="1.5"/>'
                if hi is not None
                else ""
            )
            + "</g>"
        )
        y = py(float(c["capacity_rps"]))
        cls = ' class="latest"' if i == last else ""
        ring = (
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="7.5" fill="none" stroke="#000" '
            'stroke-width="1.5"/>'
            if i == last
            else ""
        )
        out.append(
            f'<g{cls}><title>{tip}</title>{ring}<circle cx="{x:.1f}" cy="{y:.1f}" r="4" '
            f'fill="{fill}"/></g>'
        )
        out.append(
            svg._text(
                x, bottom + 12, label(str(e["run_id"])), "end", svg._rotate(x, bottom + 12, -30)
            )
        )
    xl, yl = px(last), py(float(caps[last]["capacity_rps"]))
    anchor = "end" if last > 0 else "start"
    out.append(
        svg._text(xl + (-10 if anchor == "end" else 10), yl - 9,
                  f"latest {number(caps[last]['capacity_rps'])}", anchor,
                  ' font-weight="600"')
    )  # fmt: skip
    out.append(legend)
    out.append("</svg>")
    return "".join(out)
