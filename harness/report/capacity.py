"""`harness capacity`'s result: the record's `capacity` section, the console lines, the
report.md section and report.html's capacity curve (arrival rate against p95 TTFT and goodput
share, the knee and its interval marked)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.load.capacity import ProbeResult, SearchPlan, SearchResult
from harness.load.probe import ProbeConfig
from harness.load.slo_table import SloTable
from harness.report import svg
from harness.report.svg import esc, md_table, table
from harness.units import ms, number, percent


def _probe_doc(n: int, phase: str, r: ProbeResult, share: float, run_dir: Path) -> dict[str, Any]:
    where = Path(r.directory).relative_to(run_dir).as_posix() if r.directory else None
    return {
        "n": n,
        "phase": phase,
        "rate_rps": r.rate_rps,
        "offered_rps": r.offered_rps,
        "requests": r.requests,
        "goodput_share": r.goodput_share,
        "ttft_p95_s": r.ttft_p95_s,
        "waiting_max": r.waiting_max,
        "valid": r.valid,
        "invalid_reason": r.invalid_reason,
        "over_saturated": r.over_saturated,
        "holds": r.holds(share),
        "output_tokens_per_request": r.output_tokens_per_request,
        "resource": r.resource[0] if r.resource else None,
        "resource_why": r.resource[1] if r.resource else None,
        "failed": r.extra.get("failed"),
        "abandoned": r.extra.get("abandoned"),
        "stopped_early_s": r.extra.get("stopped_early_s"),
        "dispatch_delay_p95_s": r.extra.get("dispatch_delay_p95_s"),
        "tokens_per_joule": r.extra.get("tokens_per_joule"),
        "duration_s": r.extra.get("duration_s"),
        "dir": where,
    }


def capacity_section(
    result: SearchResult,
    plan: SearchPlan,
    cfg: ProbeConfig,
    run_dir: Path,
    *,
    wall_s: float,
    target: str,
    slo: SloTable,
) -> dict[str, Any]:
    """record.json's `capacity.result`: the probes, the knee, its interval, the resource."""
    k = result.knee
    ttft_limits = [v["p95_ttft_s"] for v in slo.routes.values() if "p95_ttft_s" in v]
    return {
        "profile": cfg.profile,
        "target": target,
        "goodput_share": plan.goodput_share,
        "probe_s": cfg.duration_s,
        "request_cut_s": cfg.request_cut_s,
        "max_probes": plan.max_probes,
        "ttft_limit_s": min(ttft_limits) if ttft_limits else None,
        "probes": [
            _probe_doc(n, phase, r, plan.goodput_share, run_dir)
            for n, (phase, r) in enumerate(result.probes, 1)
        ],
        "knee": {
            "capacity_rps": k.capacity_rps,
            "capacity_tok_s": k.capacity_tok_s,
            "interval_rps": [k.lower_rps, k.upper_rps],
            "interval_tok_s": [k.lower_tok_s, k.upper_tok_s],
            "limiting_resource": k.resource,
            "why": k.resource_why,
        },
        "stopped": result.stopped,
        "wall_s": round(wall_s, 1),
    }


def _rate(v: float | None) -> str:
    return "n/a" if v is None else f"{number(v)} req/s"


def _tok(v: float | None) -> str:
    return "n/a" if v is None else f"{number(v)} tok/s"


def _interval(lo: float | None, hi: float | None, unit: str) -> str:
    if hi is None:
        return f"at least {number(lo)} {unit} (no rate failed in every trial)"
    return f"{number(lo)} - {number(hi)} {unit}"


def probe_line(n: int, most: int, phase: str, r: ProbeResult, share: float) -> str:
    """One progress line per probe."""
    verdict = "holds" if r.holds(share) else "fails"
    why = r.over_saturated or r.invalid_reason
    if why:
        verdict += f": {why.split(':')[0] if r.invalid_reason and not r.over_saturated else why}"
    return (
        f"probe {n}/{most} ({phase}) {_rate(r.rate_rps)}: goodput {percent(r.goodput_share)} "
        f"of {r.requests}, p95 TTFT {ms(r.ttft_p95_s)}, waiting max {number(r.waiting_max)}, "
        f"{'valid' if r.valid else 'INVALID'}; {verdict}"
    )


def tokens_per_joule(sec: Mapping[str, Any]) -> str | None:
    """The card's output tokens per joule in the last probe at the interval's lower end (the
    highest rate that held in every trial), where NVML measured it; None on the twins."""
    lo = sec["knee"]["interval_rps"][0]
    at = [
        p for p in sec["probes"]
        if p.get("tokens_per_joule") is not None and math.isclose(p["rate_rps"], lo)
    ]  # fmt: skip
    if not at:
        return None
    last = at[-1]
    return (
        f"GPU cost at {_rate(last['rate_rps'])}: {number(last['tokens_per_joule'])} output "
        f"tokens per joule (probe {last['n']}; every probe's in the table)"
    )


def console_lines(sec: Mapping[str, Any]) -> list[str]:
    k = sec["knee"]
    lo, hi = k["interval_rps"]
    tlo, thi = k["interval_tok_s"]
    cost = tokens_per_joule(sec)
    return [
        f"capacity ({sec['profile']} through the ai-router, {sec['target']}, goodput >= "
        f"{percent(sec['goodput_share'])}): {_rate(k['capacity_rps'])}, "
        f"{_tok(k['capacity_tok_s'])}",
        f"interval: {_interval(lo, hi, 'req/s')}; {_interval(tlo, thi, 'tok/s')}",
        f"limiting resource: {k['limiting_resource']} ({k['why']})",
        f"{len(sec['probes'])} probes of {number(sec['probe_s'])} s in {number(sec['wall_s'])} "
        f"s; search ended: {sec['stopped']}",
        *([cost] if cost else []),
    ]


def _measured_cost(sec: Mapping[str, Any]) -> bool:
    return any(p.get("tokens_per_joule") is not None for p in sec["probes"])


def _rows(sec: Mapping[str, Any]) -> list[list[object]]:
    cost = _measured_cost(sec)
    return [
        [
            p["n"], p["phase"], number(p["rate_rps"]), number(p["offered_rps"]), p["requests"],
            percent(p["goodput_share"]), ms(p["ttft_p95_s"]), number(p["waiting_max"]),
            *([number(p.get("tokens_per_joule"))] if cost else []),
            "yes" if p["valid"] else "no", "holds" if p["holds"] else "fails",
            p["over_saturated"] or p["invalid_reason"] or "",
        ]
        for p in sec["probes"]
    ]  # fmt: skip


HEAD = [
    "probe", "phase", "rate req/s", "sent req/s", "requests", "goodput", "p95 TTFT",
    "waiting max", "valid", "verdict", "note",
]  # fmt: skip
COST_COLUMN = "tok/J"  # after "waiting max", where NVML measured the probes


def head(sec: Mapping[str, Any]) -> list[str]:
    if not _measured_cost(sec):
        return HEAD
    at = HEAD.index("waiting max") + 1
    return [*HEAD[:at], COST_COLUMN, *HEAD[at:]]


def markdown(doc: Mapping[str, Any]) -> list[str]:
    """report.md's capacity section; [] when the run measured none."""
    sec = (doc.get("capacity") or {}).get("result")
    if not sec:
        return []
    out = ["## Capacity", "", *(f"- {line}" for line in console_lines(sec)), ""]
    return [*out, *md_table(head(sec), _rows(sec)), ""]


def html(doc: Mapping[str, Any]) -> str:
    """report.html's capacity section with the curve; '' when the run measured none."""
    sec = (doc.get("capacity") or {}).get("result")
    if not sec:
        return ""
    lines = "".join(f"<li>{esc(line)}</li>" for line in console_lines(sec))
    return f'<h2>Capacity</h2><ul>{lines}</ul><div class="plots">{curve(sec)}</div>' + table(
        head(sec), _rows(sec)
    )


def curve(sec: Mapping[str, Any], width: int = 640, height: int = 320) -> str:
    """Arrival rate (x) against p95 TTFT (left axis, ms) and goodput share (right axis, %):
    one point per probe, lines through each rate's mean, the knee as a vertical line, its
    interval shaded, the required share and the tightest TTFT limit dashed."""
    probes: Sequence[Mapping[str, Any]] = sec["probes"]
    k = sec["knee"]
    lo, hi = k["interval_rps"]
    ttft_c, good_c = svg.PALETTE[0], svg.PALETTE[2]
    limit_ms = sec["ttft_limit_s"] * 1000 if sec.get("ttft_limit_s") else None
    share_label = f"goodput {percent(sec['goodput_share'])} needed"
    limit_label = f"p95 TTFT limit {svg.fmt(limit_ms)} ms" if limit_ms else ""
    items = [("p95 TTFT", ttft_c), ("goodput share", good_c), ("interval", "#ccbb44")]
    items += [(share_label, good_c)] + ([(limit_label, ttft_c)] if limit_ms else [])
    left, right = 62, width - 58
    legend, lines = svg._legend(items, left + 4, 36, right, [share_label, limit_label])
    top, bottom = 34 + 15 * lines, height - 40
    rates = [float(p["rate_rps"]) for p in probes] + [float(lo or 0), float(hi or 0)]
    x_ticks = svg.nice_ticks(max(rates, default=1.0) * 1.05)
    ttfts = [p["ttft_p95_s"] * 1000 for p in probes if p["ttft_p95_s"] is not None]
    y_ticks = svg.nice_ticks(max([*ttfts, limit_ms or 0.0], default=1.0))

    def px(x: float) -> float:
        return left + (right - left) * x / (x_ticks[-1] or 1.0)

    def py(v: float) -> float:
        return bottom - (bottom - top) * v / (y_ticks[-1] or 1.0)

    def pg(share: float) -> float:
        return bottom - (bottom - top) * share

    title = f"Capacity curve: {sec['profile']} on {sec['target']}"
    out = svg._open("plot-capacity-curve", title, width, height)
    for t in y_ticks:
        out.append(
            f'<line x1="{left}" y1="{py(t):.1f}" x2="{right}" y2="{py(t):.1f}" '
            f'stroke="{svg.GRID}"/>' + svg._text(left - 6, py(t) + 4, svg.fmt(t), "end")
        )
    for share in (0.0, 0.25, 0.5, 0.75, 1.0):
        out.append(svg._text(right + 6, pg(share) + 4, percent(share, 2), "start"))
    for t in x_ticks:
        out.append(svg._text(px(t), bottom + 14, svg.fmt(t)))
    out.append(svg._text((left + right) / 2, bottom + 30, "arrival rate, req/s"))
    out.append(
        svg._text(14, (top + bottom) / 2, "p95 TTFT, ms", extra=f' fill="{ttft_c}"'
                  f' transform="rotate(-90 14 {(top + bottom) / 2:.1f})"')
    )  # fmt: skip
    mid = (top + bottom) / 2
    out.append(
        svg._text(width - 10, mid, "goodput share", extra=f' fill="{good_c}"'
                  f' transform="rotate(90 {width - 10} {mid:.1f})"')
    )  # fmt: skip
    x_hi = px(hi) if hi is not None else right
    out.append(
        f'<rect class="interval" x="{px(lo or 0):.1f}" y="{top}" '
        f'width="{max(1.0, x_hi - px(lo or 0)):.1f}" height="{bottom - top}" fill="#ccbb44" '
        f'fill-opacity="0.18"><title>{esc(_interval(lo, hi, "req/s"))}</title></rect>'
    )
    refs = [(pg(sec["goodput_share"]), share_label, good_c)]
    if limit_ms:
        refs.append((py(limit_ms), limit_label, ttft_c))
    for y, label, colour in refs:
        out.append(
            f'<line class="ref" x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" '
            f'stroke="{colour}" stroke-dasharray="6 3"><title>{esc(label)}</title></line>'
        )
    by_rate: dict[float, list[Mapping[str, Any]]] = {}
    for p in probes:
        by_rate.setdefault(float(p["rate_rps"]), []).append(p)
    for key, colour, place, scale in (
        ("ttft_p95_s", ttft_c, py, 1000.0),
        ("goodput_share", good_c, pg, 1.0),
    ):
        pts = []
        for rate in sorted(by_rate):
            vs = [float(p[key]) * scale for p in by_rate[rate] if p[key] is not None]
            if vs:
                pts.append(f"{px(rate):.1f},{place(sum(vs) / len(vs)):.1f}")
        if pts:
            out.append(
                f'<polyline points="{" ".join(pts)}" fill="none" stroke="{colour}" '
                f'stroke-width="1.6"/>'
            )
        for p in probes:
            if p[key] is None:
                continue
            v = float(p[key]) * scale
            tip = f"probe {p['n']} at {number(p['rate_rps'])} req/s: " + (
                ms(p[key]) if key == "ttft_p95_s" else percent(p[key])
            )
            fill = colour if p["holds"] else "#fff"
            out.append(
                f'<circle cx="{px(float(p["rate_rps"])):.1f}" cy="{place(v):.1f}" r="3.5" '
                f'fill="{fill}" stroke="{colour}" stroke-width="1.5"><title>{esc(tip)}</title>'
                "</circle>"
            )
    kx = px(float(k["capacity_rps"]))
    knee_tip = esc("knee: " + _rate(k["capacity_rps"]))
    out.append(
        f'<line class="knee" x1="{kx:.1f}" y1="{top}" x2="{kx:.1f}" y2="{bottom}" '
        f'stroke="#000" stroke-width="2"><title>{knee_tip}</title></line>'
    )
    out.append(svg._text(kx + 4, top + 12, f"knee {number(k['capacity_rps'])}", "start"))
    out.append(
        f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="{svg.AXIS}"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="{svg.AXIS}"/>'
        f'<line x1="{right}" y1="{top}" x2="{right}" y2="{bottom}" stroke="{svg.AXIS}"/>'
    )
    out.append(legend)
    out.append("</svg>")
    return "".join(out)
