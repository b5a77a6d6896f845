"""report.html: one self-contained page per run, with inline SVG plots and no external resource.

Plots (each an `<svg>` with a stable id): latency percentiles per profile and route
(`plot-latency-ttft|itl|e2e`), KV usage and queue timelines per profile and engine
(`plot-timeline-<profile>-<engine>-kv|queue`, max-num-seqs dashed), the routing confusion
matrix (`plot-confusion`), the long-context matrix (`plot-long-context`), the capacity curve
(`plot-capacity-curve`), the safe envelope per engine (`plot-envelope-<engine>`), the VRAM
budget (`plot-vram`) and, given history, trends (`plot-trend-accuracy`,
`plot-trend-ttft-<profile>`, `plot-trend-capacity-<profile>`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.report import capacity, conversation, envelope, gpu_cost, summary, svg, tune, verdict
from harness.report.compare import Comparison
from harness.report.compare_render import cells, verdict_line
from harness.report.html_load import load, trends
from harness.report.svg import esc, fmt, table
from harness.units import percent

OUTCOME_FILL = {
    summary.OK: "#a6dba0",
    summary.FLAGGED: "#c2e4ef",
    summary.FALLBACK: "#fdb863",
    summary.TRUNCATED: "#c2a5cf",
    summary.MISROUTED: "#fee08b",
    summary.ERROR: "#e66101",
    summary.UNFLAGGED: "#f4a582",
}
# A classified request that took the other route where the route is not judged (cue not last).
OTHER_ROUTE = "other route, cue not last: not judged"
OTHER_ROUTE_FILL = "#d9d9d9"
LEGEND = {
    summary.OK: "ok: right route",
    summary.FLAGGED: "flagged: past max-model-len, the router said so (correct)",
}
BUDGET_FILLS = ("#99ddff", "#77aadd", "#44bb99")
GIB = 2**30
CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1180px;color:#222;
padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:16px 0 6px}.meta{color:#666}
.badge{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff;font-weight:600}
.passed{background:#228833}.failed,.interrupted{background:#cc3311}.running{background:#777}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:140px}
.card b{display:block;font-size:18px}.bad{color:#cc3311}.good{color:#228833}
table{border-collapse:collapse;margin:6px 0 12px}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:left}th{background:#f5f5f5}td.n{text-align:right;font-variant-numeric:tabular-nums}
.plots{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}svg.plot{max-width:100%;height:auto;
border:1px solid #eee;border-radius:4px;background:#fff}
.regression td{background:#fde0dd}code{font-size:12px}
.why{border:2px solid #cc3311;border-radius:6px;background:#fff5f2;padding:6px 14px;margin:12px 0}
.why h2{margin:6px 0;border:0;color:#cc3311}.why li{margin:3px 0}
.why pre{margin:2px 0 0;white-space:pre-wrap;font-size:12px;color:#444}
.card.red{border-color:#cc3311;background:#fff5f2}tr.breach td{background:#fde0dd}
"""


def _card(label: str, value: str, good: bool | None = None) -> str:
    c = "" if good is None else (' class="good"' if good else ' class="bad"')
    box = "card red" if good is False else "card"
    return f'<div class="{box}">{esc(label)}<b{c}>{esc(value)}</b></div>'


def _breached(doc: dict[str, Any], *keys: str) -> bool:
    return any(c["key"] in keys for c in verdict.violated_slos(doc))


def header(doc: dict[str, Any], c: Comparison | None) -> str:
    status = str(doc["status"])
    meta = (
        f"target {doc['target']} · started {doc['started_at']} · finished "
        f"{doc.get('finished_at') or '-'} · harness {doc.get('harness_version', '?')}"
    )
    sha = doc.get("preflight", {}).get("compose_sha256")
    if sha:
        meta += f" · compose {str(sha)[:12]}"
    cards = [_card("status", status.upper(), status == "passed")]
    block = doc.get("why_failed") or {}
    slos = verdict.slo_rows(doc)
    if slos:
        met = sum(bool(c.get("passed")) for c in slos)
        cards.append(_card("SLOs met", f"{met} / {len(slos)}", met == len(slos)))
    if block.get("tests"):
        cards.append(_card("tests failed", str(len(block["tests"])), False))
    if block.get("bring_up"):
        cards.append(_card("bring-up", "FAILED", False))
    r = summary.routing(doc)
    if r is not None:
        floor_breached = _breached(doc, "routing_accuracy_floor")
        cards.append(
            _card("routing accuracy", percent(r["accuracy"]), False if floor_breached else None)
        )
    rows = summary.long_context(doc)
    if rows is not None:
        ok = sum(x.outcome in summary.PASSING for x in rows)
        cards.append(_card("long context", f"{ok} / {len(rows)} passed", ok == len(rows)))
    fb = summary.fallbacks(doc)
    if fb:
        cards.append(_card("fallbacks", str(sum(fb.values())), sum(fb.values()) == 0))
    profiles = summary.profiles(doc)
    if profiles:
        engines = [e for s in profiles.values() for e in s.get("engines", {}).values()]
        pre = sum(e.get("preemptions", 0) for e in engines)
        err = max(s["error_rate"] for s in profiles.values())
        cards.append(
            _card(
                "worst error rate", percent(err), err == 0 and not _breached(doc, "max_error_rate")
            )
        )
        cards.append(
            _card("preemptions", f"{pre:.0f}", False if _breached(doc, "max_preemptions") else None)
        )
        latency = [c for c in verdict.violated_slos(doc) if str(c["key"]).startswith("p95_")]
        if latency:
            worst = min(latency, key=lambda c: c.get("margin") or 0.0)
            cards.append(
                _card(
                    f"latency SLOs breached ({len(latency)})",
                    f"{worst['key']} {verdict.slo_value(worst['key'], worst.get('value'))}",
                    False,
                )
            )
    if c is not None:
        cards.append(
            _card(
                "vs baseline", "REGRESSION" if c.regression else "no regression", not c.regression
            )
        )
    return (
        f'<h1>Run {esc(doc["run_id"])} <span class="badge {esc(status)}">'
        f'{esc(status)}</span></h1><div class="meta">{esc(meta)}</div>'
        f'<div class="cards">{"".join(cards)}</div>'
    )


def why_failed(doc: dict[str, Any]) -> str:
    """The first block of a red run (report.md's "Why it failed", as HTML)."""
    block = doc.get("why_failed") or {}
    if doc.get("status") == "passed" or not block:
        return ""
    items = [f"<li><b>SLO</b> {esc(verdict.slo_sentence(c))}</li>" for c in block["slos"]]
    for t in block.get("tests") or []:
        where = "" if t.get("phase") in (None, "call") else f" ({t['phase']})"
        items.append(
            f"<li><b>Test</b> <code>{esc(t['nodeid'])}</code>{esc(where)}"
            f"<pre>{esc(t.get('message', ''))}</pre></li>"
        )
    for b in block.get("bring_up") or []:
        logs = ", ".join(f"<code>{esc(p)}</code>" for p in b.get("logs") or []) or "none written"
        items.append(f"<li><b>Bring-up</b> {esc(b['error'])} (logs: {logs})</li>")
    head = esc(verdict.verdict(str(doc["status"]), block))
    return (
        f'<div class="why" id="why-failed"><h2>Why it failed</h2><p><b>{head}</b></p>'
        f"<ul>{''.join(items)}</ul></div>"
    )


def slo_table(doc: dict[str, Any]) -> str:
    rows = verdict.slo_rows(doc)
    if not rows:
        return ""
    body = [
        [
            c["profile"],
            c.get("route") or "-",
            c["key"],
            verdict.slo_value(c["key"], c.get("limit")),
            verdict.slo_value(c["key"], c.get("value")),
            verdict.slo_value(c["key"], c.get("margin")),
            "ok" if c.get("passed") else "BREACH",
            c.get("source", ""),
        ]
        for c in rows
    ]
    head = ["profile", "route", "SLO", "limit", "measured", "margin", "verdict", "set in"]
    classes = ["" if c.get("passed") else "breach" for c in rows]
    return f'<h2 id="slos">SLOs</h2>{table(head, body, classes)}'


def comparison(c: Comparison) -> str:
    rows = [r for r in c.rows if r.verdict != "ok"] or list(c.rows)
    body = []
    for r in rows:
        base, cur, delta, limit = cells(r)
        if r.limit is not None:
            limit = ("≤ " if r.bound == "max" else "≥ ") + limit
        body.append([r.metric, base, cur, delta, limit, r.verdict, r.note])
    return f"<h2>Comparison</h2><p><b>{esc(verdict_line(c))}</b></p>" + table(
        ["metric", "baseline", "current", "delta", "limit", "verdict", "note"],
        body,
        [r.verdict.replace(" ", "-") for r in rows],
    )


def routing(doc: dict[str, Any]) -> str:
    r = summary.routing(doc)
    if r is None:
        return ""
    expected = list(r["confusion"])
    cols = list(dict.fromkeys(g for row in r["confusion"].values() for g in row))
    cells: list[list[svg.Cell | None]] = []
    for e in expected:
        total = sum(r["confusion"][e].values()) or 1
        row: list[svg.Cell | None] = []
        for g in cols:
            n = int(r["confusion"][e].get(g, 0))
            share = n / total
            fill = (
                svg.blend("#228833", 0.15 + 0.85 * share)
                if g == e
                else svg.blend("#cc3311", 0.15 + 0.85 * share)
                if n
                else "#f7f7f7"
            )
            row.append((str(n), fill))
        cells.append(row)
    labels = [f"expected {e}" for e in expected]
    if r.get("either"):
        labels.append("either (ambiguous)")
        cells.append([(str(r["either"].get(g, 0)), "#dde7f3") for g in cols])
    plot = svg.grid(
        "plot-confusion",
        "Routing confusion matrix (rows: expected, cols: got)",
        labels,
        [f"got {g}" for g in cols],
        cells,
        corner="",
    )
    per = [
        [route, f"{v.get('precision', 0):.3f}", f"{v.get('recall', 0):.3f}"]
        for route, v in r.get("per_route", {}).items()
    ]
    misses = [
        [m.get("id"), m.get("expected"), m.get("got"), m.get("reason")]
        for m in r.get("misses", [])[:20]
    ]
    return (
        f"<h2>Routing</h2><p>accuracy <b>{percent(r['accuracy'])}</b> on {r.get('scored', '?')} "
        f'items, {r["fallbacks"]} fallbacks</p><div class="plots">{plot}'
        f"{table(['route', 'precision', 'recall'], per)}</div>"
        + (f"<h3>Misses</h3>{table(['id', 'expected', 'got', 'reason'], misses)}" if misses else "")
    )


def long_context_cell(x: summary.LongContextRow) -> svg.Cell:
    """A cell's text and colour: green only for a right route. A classified request that took
    the other route with its cue not last is not judged (the classifier may read the earlier
    cue), so it is not a failure, and it is not painted as a success either."""
    if x.outcome == summary.OK and x.got != x.route:
        return f"→ {x.got} (not judged)", OTHER_ROUTE_FILL
    return (x.got if x.outcome == summary.OK else x.outcome), OUTCOME_FILL[x.outcome]


def long_context(doc: dict[str, Any]) -> str:
    rows = summary.long_context(doc)
    if rows is None:
        return ""
    cols = summary.token_columns(rows)
    keys = list(dict.fromkeys(f"{x.placement} / {x.route}" for x in rows))
    cells: list[list[svg.Cell | None]] = [[None] * len(cols) for _ in keys]
    for x in rows:
        i = keys.index(f"{x.placement} / {x.route}")
        j = next(
            k
            for k, (_, members) in enumerate(cols)
            if x.tokens in members and (x.over_limit == cols[k][0].endswith("(over)"))
        )
        text, fill = long_context_cell(x)
        if cells[i][j] is None or x.outcome not in summary.PASSING or fill == OTHER_ROUTE_FILL:
            cells[i][j] = (text, fill)
    legend = [
        (LEGEND.get(o, o), OUTCOME_FILL[o]) for o, n in summary.outcome_counts(rows).items() if n
    ]
    if any(long_context_cell(x)[1] == OTHER_ROUTE_FILL for x in rows):
        legend.append((OTHER_ROUTE, OTHER_ROUTE_FILL))
    plot = svg.grid(
        "plot-long-context",
        "Long-context classification (placement / route x tokens)",
        keys,
        [label for label, _ in cols],
        cells,
        legend=legend,
        corner="tokens →",
        cell_w=110,
    )
    counts = ", ".join(f"{n} {k}" for k, n in summary.outcome_counts(rows).items() if n)
    return f'<h2>Long context</h2><p>{esc(counts)}</p><div class="plots">{plot}</div>'


def memory_rows(kv: dict[str, Any]) -> list[list[str]]:
    """Per engine: the VRAM model's parts, then vLLM's startup breakdown where it was logged
    (requested budget, weights, what the reserve stands for, KV cache)."""

    def gib(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.2f}"

    rows = []
    for engine, v in kv.items():
        mem = v.get("memory") or {}
        model, logged = mem.get("model") or {}, mem.get("engine") or {}
        if model:
            keys = ("budget_gib", "weights_gib", "reserve_gib", "kv_pool_gib")
            rows.append([engine, "VRAM model", *(gib(model.get(k)) for k in keys)])
        if logged:
            weights = logged.get("weights_gib") or logged.get("model_loading_gib")
            rows.append(
                [
                    engine,
                    "vLLM startup log",
                    gib(logged.get("requested_gib")),
                    gib(weights),
                    gib(logged.get("reserve_gib")),
                    gib(logged.get("kv_cache_gib")),
                ]
            )
    return rows


def kv_and_vram(doc: dict[str, Any]) -> str:
    out = []
    kv = doc.get("acceptance", {}).get("kv_capacity", {})
    if kv:
        rows = [
            [
                e,
                f"{v['log_tokens']:,}",
                fmt(v.get("log_max_concurrency")),
                "-" if v.get("predicted_tokens") is None else f"{v['predicted_tokens']:,}",
                "-"
                if v.get("prediction_error_pct") is None
                else "forced, not measured (twin)"
                if v.get("prediction_check") == "exact"
                else "what-if override"
                if v.get("prediction_check") == "override"
                else f"{v['prediction_error_pct']:+.2f}%",
            ]
            for e, v in kv.items()
        ]
        out.append(
            "<h3>KV capacity: engine log against the VRAM model</h3>"
            + table(["engine", "KV tokens (log)", "x max-model-len", "predicted", "error"], rows)
        )
        parts = memory_rows(kv)
        if parts:
            out.append(
                "<h3>Memory: the engine's own breakdown beside the VRAM model (GiB)</h3>"
                + table(["engine", "source", "budget", "weights", "reserve", "KV pool"], parts)
            )
    pre = doc.get("preflight", {})
    engines, gpu = pre.get("engines", {}), pre.get("gpu", {})
    if engines and gpu.get("total_bytes"):
        bars: list[tuple[str, list[tuple[str, float, str]], float | None]] = []
        for name, e in engines.items():
            segs = [
                ("weights", e.get("weight_bytes", 0), "#4477aa"),
                ("activation reserve", e.get("activation_reserve_bytes", 0), "#ccbb44"),
                ("KV pool", e.get("kv_pool_bytes", 0), "#228833"),
            ]
            bars.append((name, segs, float(e.get("budget_bytes", 0)) or None))
        ctx = gpu.get("cuda_context_bytes_per_engine", 0) * len(engines)
        card = [
            (f"{n} budget", float(e.get("budget_bytes", 0)), BUDGET_FILLS[i % 3])
            for i, (n, e) in enumerate(engines.items())
        ]
        card += [
            ("CUDA contexts", float(ctx), "#ee8866"),
            ("free headroom", float(max(0, gpu.get("headroom_bytes", 0))), "#dddddd"),
        ]
        bars.append(("card total", card, None))
        out.append(
            svg.stacked_bars(
                "plot-vram",
                "VRAM budget per engine (bar = budget, card scale)",
                bars,
                float(gpu["total_bytes"]),
                scale_label="card",
                value_fmt=lambda v: f"{v / GIB:.1f} GiB",
            )
        )
    findings = [
        [f.get("severity"), f.get("rule"), f.get("service") or "", f.get("message")]
        for f in pre.get("findings", [])
    ]
    if findings:
        out.append(
            "<h3>Preflight findings</h3>"
            + table(["severity", "rule", "service", "message"], findings)
        )
    return "<h2>KV cache and VRAM</h2>" + "".join(out) if out else ""


def stack(doc: dict[str, Any]) -> str:
    services = doc.get("stack", {}).get("services", {})
    out = []
    if services:
        rows = [
            [
                n,
                s.get("role", ""),
                s.get("model") or "",
                fmt(s.get("time_to_healthy_s")),
                "-" if not s.get("kv") else f"{s['kv'].get('tokens', 0):,}",
            ]
            for n, s in services.items()
        ]
        out.append(table(["service", "role", "model", "healthy after s", "KV tokens"], rows))
    notes = doc.get("stack", {}).get("notes", [])
    out += [f"<p class=meta>note: {esc(n)}</p>" for n in notes]
    for section in ("environment", "timings", "startup"):
        items = doc.get(section) or {}
        if items:
            rows = [[k, v if isinstance(v, str) else json.dumps(v)[:200]] for k, v in items.items()]
            out.append(f"<h3>{section}</h3>" + table(["key", "value"], rows))
    return "<h2>Stack</h2>" + "".join(out) if out else ""


def render_html(
    doc: dict[str, Any],
    run_dir: Path | None = None,
    *,
    history: list[dict[str, Any]] | None = None,
    comparison_: Comparison | None = None,
) -> str:
    """The whole page. `run_dir` supplies the load timelines; `history` the trend plots."""
    body = [header(doc, comparison_), why_failed(doc), tune.html(doc), slo_table(doc)]
    if comparison_ is not None:
        body.append(comparison(comparison_))
    body += [routing(doc), long_context(doc), load(doc, run_dir), gpu_cost.html(doc, run_dir)]
    body.append(conversation.html(doc))
    body += [capacity.html(doc), envelope.html(doc)]
    body.append(kv_and_vram(doc))
    body += [trends(history or []), stack(doc)]
    csp = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(doc['run_id'])}: {esc(doc['status'])}</title><style>{CSS}</style>"
        f"</head><body>{''.join(body)}</body></html>\n"
    )
