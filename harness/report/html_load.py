"""The load sections of report.html: latency bars, where the time to first token goes per route
(`plot-waterfall`), per-profile engine tables and timelines read from
`<run dir>/load/<profile>/timeline.jsonl`, and the trend plots over past runs."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from harness.load.profiles import PROFILES
from harness.load.records import read_records
from harness.load.series import by_concurrency, over_time
from harness.report import capacity_trend, summary, svg, verdict
from harness.report.svg import esc, fmt, slug, table
from harness.report.waterfall_table import (
    UNACCOUNTED,
    part_names,
    waterfall_lines,
    waterfall_rows,
    waterfall_table,
)
from harness.units import percent


def read_timeline(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if not path.is_file():
        return rows
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by an interrupted run
        if isinstance(row, dict) and "t" in row and "engine" in row:
            rows.append(row)
    return rows


def _series(
    rows: list[dict[str, Any]], key: str, t0: float, scale: float = 1.0, most: int = 300
) -> list[svg.Point]:
    """(t - t0, value) with at most `most` points: each bucket keeps its peak."""
    pts = [(float(r["t"]) - t0, float(r.get(key) or 0.0) * scale) for r in rows]
    k = max(1, -(-len(pts) // most))
    return [max(pts[i : i + k], key=lambda p: p[1]) for i in range(0, len(pts), k)]


def load(doc: dict[str, Any], run_dir: Path | None) -> str:
    profiles = summary.profiles(doc)
    if not profiles:
        return ""
    out = ["<h2>Load</h2>"]
    plots = []
    for metric, name in (("ttft_s", "TTFT"), ("itl_s", "inter-token latency"), ("e2e_s", "E2E")):
        groups = [
            (
                f"{p}/{label}",
                [summary.ms(summary.pct(s, label, metric, q)) for q in ("p50", "p95", "p99")],
            )
            for p, s in profiles.items()
            for label in summary.labels(s)
        ]
        limits = [
            summary.ms(verdict.route_limit(s, label, f"p95_{metric}"))
            for s in profiles.values()
            for label in summary.labels(s)
        ]
        plots.append(
            svg.bar_chart(
                f"plot-latency-{metric.removesuffix('_s')}",
                f"{name} percentiles per profile / route",
                groups,
                ["p50", "p95", "p99"],
                unit="ms",
                limits=limits,
                limit_label="p95 SLO limit",
            )
        )
    out.append(f'<div class="plots">{"".join(plots)}</div>')
    rows = [
        [
            f.profile,
            f.label,
            f.ok,
            f.failed,
            fmt(f.ttft_p50_ms),
            fmt(f.ttft_p95_ms),
            fmt(f.itl_p50_ms),
            fmt(f.itl_p95_ms),
            fmt(f.tpot_p50_ms),
            fmt(f.e2e_p50_ms),
            fmt(f.e2e_p95_ms),
            fmt(f.output_tok_s),
            _goodput(f.goodput_rps, f.goodput_share),
        ]
        for f in summary.route_figures(doc)
    ]
    out.append(
        table(
            [
                "profile",
                "route",
                "ok",
                "failed",
                "TTFT p50 ms",
                "TTFT p95 ms",
                "ITL p50 ms",
                "ITL p95 ms",
                "TPOT p50 ms",
                "E2E p50 ms",
                "E2E p95 ms",
                "output tok/s",
                "goodput req/s (share)",
            ],
            rows,
        )
    )
    out.append(
        "<p class=meta>ITL n/a: every answer of the route came in one read. Goodput: requests "
        "within every latency limit of their route's SLOs (TTFT, TPOT against p95_itl_s, E2E), "
        "per second.</p>"
    )
    lines = summary.client_engine(doc)
    if lines:
        out.append(
            '<h3 id="client-engine">Client against engine</h3>'
            + "".join(f"<p>{esc(line)}</p>" for line in lines)
        )
    out.append(_waterfall(doc))
    pools = summary.kv_pools(doc)
    if pools:
        out.append(
            '<h3 id="kv-pool">KV pool</h3>'
            + "".join(f"<p>{esc(pool.sentence())}</p>" for pool in pools)
        )
    for p, s in profiles.items():
        out.append(_profile(p, s, run_dir))
    return "".join(out)


def _waterfall(doc: dict[str, Any]) -> str:
    """Each route's time to first token as stacked parts (harness.load.waterfall), the client's
    mean TTFT marked on the same scale, then the table and what it says."""
    found = waterfall_rows(doc)
    if not found:
        return ""
    names = part_names(found)
    # The palette's grey is kept for the time outside the router's clock; a brown takes its
    # place, so that seven parts still differ.
    palette = [*(c for c in svg.PALETTE if c != "#bbbbbb"), "#aa7744"]
    colours = {name: palette[i % len(palette)] for i, name in enumerate(names)}
    colours[UNACCOUNTED] = "#dddddd"
    bars = [
        (
            f"{r.profile} {r.route}",
            [
                *((n, max(0.0, ms), colours[n]) for n, ms in r.parts.items()),
                (UNACCOUNTED, max(0.0, r.unaccounted_ms), colours[UNACCOUNTED]),
            ],
            r.client_ttft_ms,
        )
        for r in found
    ]
    scale = max(max(r.client_ttft_ms, sum(max(0.0, v) for v in r.parts.values())) for r in found)
    plot = svg.stacked_bars(
        "plot-waterfall",
        "Where the time to first token goes (means, ms)",
        bars,
        # Room right of the longest bar for the client's mean, written beside its mark.
        scale * 1.35,
        value_fmt=lambda v: f"{fmt(v)} ms",
        scale_label="scale",
        bracket_label="client mean TTFT",
    )
    head, body = waterfall_table(found)
    said = "".join(f"<p>{esc(line)}</p>" for line in waterfall_lines(doc))
    return (
        '<h3 id="waterfall">Where the time to first token goes</h3>'
        f'<div class="plots">{plot}</div>{table(head, body)}{said}'
    )


def _goodput(rps: float | None, share: float | None) -> str:
    if rps is None:
        return "n/a"
    return f"{fmt(rps)} ({percent(share, 2)})" if share is not None else fmt(rps)


def _raw_links(profile: str, run_dir: Path) -> str:
    base = run_dir / "load" / profile
    links = [
        f'<a href="load/{esc(profile)}/{esc(name)}">{esc(name)}</a> ({esc(what)})'
        for name, what in summary.RAW_FILES
        if (base / name).is_file()
    ]
    return f"<p>Raw data: {', '.join(links)}</p>" if links else ""


def _client_plots(profile: str, run_dir: Path) -> list[str]:
    """Latency and request rate over the run from requests.jsonl; for ramp, TTFT against the
    requests in flight."""
    records = read_records(run_dir / "load" / profile / "requests.jsonl")
    if not records:
        return []
    pid = f"plot-client-{slug(profile)}"
    width, bins = over_time(records)
    plots = [
        svg.line_chart(
            f"{pid}-ttft-over-time",
            f"{profile}: client TTFT over the run ({width:g} s bins)",
            [
                ("TTFT p50", [(b.t_s, b.ttft_p50_ms) for b in bins if b.ttft_p50_ms is not None]),
                ("TTFT p95", [(b.t_s, b.ttft_p95_ms) for b in bins if b.ttft_p95_ms is not None]),
            ],
            unit="ms",
        ),
        svg.line_chart(
            f"{pid}-rate-over-time",
            f"{profile}: requests per second over the run",
            [
                ("started", [(b.t_s, b.started / width) for b in bins]),
                ("completed ok", [(b.t_s, b.completed_ok / width) for b in bins]),
            ],
            unit="req/s",
        ),
    ]
    if profile == "ramp":
        levels = by_concurrency(records)
        plots.append(
            svg.line_chart(
                f"{pid}-ttft-by-concurrency",
                f"{profile}: client TTFT against requests in flight",
                [
                    (
                        "TTFT p50",
                        [(c.in_flight, c.ttft_p50_ms) for c in levels if c.ttft_p50_ms is not None],
                    ),
                    (
                        "TTFT p95",
                        [(c.in_flight, c.ttft_p95_ms) for c in levels if c.ttft_p95_ms is not None],
                    ),
                ],
                unit="ms",
                x_unit="in flight",
            )
        )
    return plots


def _profile(profile: str, s: dict[str, Any], run_dir: Path | None) -> str:
    tp = s.get("throughput", {}).get("requests_per_s")
    head = (
        f"<h3>{esc(profile)}</h3><p>{s['requests']} requests, {s['failed']} failed "
        f"({percent(s['error_rate'])}), {fmt(tp)} req/s</p>"
    )
    reasons = s.get("route_reasons") or {}
    if reasons:
        head += "<p>X-Route-Reason: " + esc(", ".join(f"{r} {n}" for r, n in reasons.items()))
        head += "</p>"
    if s.get("scrape_errors"):
        head += f"<p>{int(s['scrape_errors'])} /metrics scrapes failed</p>"
    errs = "".join(f"<li><code>{esc(e)}</code></li>" for e in s.get("errors", [])[:5])
    rows = [
        [
            e,
            percent(v.get("kv_usage_peak")),
            fmt(v.get("kv_usage_above_90_s")),
            f"{fmt(v.get('running_max'))} / {v.get('max_num_seqs', '?')}",
            fmt(v.get("waiting_max")),
            fmt(v.get("waiting_capacity_max")),
            fmt(v.get("preemptions")),
        ]
        for e, v in s.get("engines", {}).items()
    ]
    engines = table(
        [
            "engine",
            "KV peak",
            "KV >90% s",
            "running max",
            "waiting max",
            "waiting, reason=capacity",
            "preemptions",
        ],
        rows,
    )
    timeline = (
        [] if run_dir is None else read_timeline(run_dir / "load" / profile / "timeline.jsonl")
    )
    plots = []
    t0 = min((float(r["t"]) for r in timeline), default=0.0)
    for engine in dict.fromkeys(r["engine"] for r in timeline):
        rs = [r for r in timeline if r["engine"] == engine]
        seqs = s.get("engines", {}).get(engine, {}).get("max_num_seqs")
        pid = f"plot-timeline-{slug(profile)}-{slug(engine)}"
        plots.append(
            svg.line_chart(
                f"{pid}-kv",
                f"{profile} · {engine}: KV cache usage",
                [("KV usage %", _series(rs, "kv_usage", t0, 100.0))],
                unit="%",
                y_max=100.0,
                hlines=[(90.0, "90%")],
            )
        )
        series = [
            ("running", _series(rs, "running", t0)),
            ("waiting", _series(rs, "waiting", t0)),
            ("waiting, reason=capacity", _series(rs, "waiting_capacity", t0)),
        ]
        hl = [(float(seqs), f"max-num-seqs {seqs}")] if seqs else []
        top = max([float(seqs or 0)] + [y for _, pts in series for _, y in pts])
        plots.append(
            svg.line_chart(
                f"{pid}-queue",
                f"{profile} · {engine}: running / waiting",
                series,
                unit="requests",
                hlines=hl,
                y_max=top * 1.25 or 1.0,
            )
        )
    note = "" if plots else "<p class=meta>no timeline.jsonl for this profile</p>"
    if run_dir is not None:
        head += _raw_links(profile, run_dir)
        plots = _client_plots(profile, run_dir) + plots
    return (
        head
        + (f"<ul>{errs}</ul>" if errs else "")
        + engines
        + f'<div class="plots">{"".join(plots)}</div>'
        + note
    )


def _short_id(run_id: str) -> str:
    m = re.match(r"^\d{4}(\d\d)(\d\d)T(\d\d)(\d\d)", run_id)
    return f"{m[1]}-{m[2]} {m[3]}:{m[4]}" if m else run_id[:14]


def trends(history: list[dict[str, Any]]) -> str:
    if not history:
        return ""
    labels = [_short_id(str(e["run_id"])) for e in history]
    acc = [
        (float(i), float(e["routing_accuracy"]))
        for i, e in enumerate(history)
        if e.get("routing_accuracy") is not None
    ]
    low = min([y for _, y in acc] + [1.0])
    floor = max(0.0, math.floor((low - 0.02) * 20) / 20)  # a 2-point drop must be visible
    plots = [
        svg.line_chart(
            "plot-trend-accuracy",
            "Routing accuracy, last runs",
            [("accuracy", acc)],
            y_max=1.0,
            y_min=floor,
            x_labels=labels,
            width=480,
        )
    ]
    order = {p: i for i, p in enumerate(PROFILES)}
    profiles = sorted(
        dict.fromkeys(p for e in history for p in e.get("load", {})),
        key=lambda p: (order.get(p, len(order)), p),
    )
    for p in profiles:
        routes = list(
            dict.fromkeys(
                r for e in history for r in e.get("load", {}).get(p, {}).get("p95_ttft_s", {})
            )
        )
        series = []
        for route in routes:
            pts = [
                (float(i), float(v))
                for i, e in enumerate(history)
                if (v := e.get("load", {}).get(p, {}).get("p95_ttft_s", {}).get(route)) is not None
            ]
            series.append((route, pts))
        plots.append(
            svg.line_chart(
                f"plot-trend-ttft-{slug(p)}",
                f"{p}: p95 TTFT, last runs",
                [(route, [(x, y * 1000) for x, y in pts]) for route, pts in series],
                unit="ms",
                x_labels=labels,
                width=480,
            )
        )
    capacity_plots, notes = capacity_trend.html(history, _short_id)
    plots += capacity_plots
    return (
        f"<h2>Trends over the last {len(history)} runs</h2>"
        f'<div class="plots">{"".join(plots)}</div>'
        + "".join(f"<p class=meta>{esc(n)}</p>" for n in notes)
    )
