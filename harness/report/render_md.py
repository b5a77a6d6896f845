"""report.md: what a run says in a terminal or a chat message, in a screenful."""

from __future__ import annotations

from typing import Any

from harness.report import (
    capacity,
    conversation,
    envelope,
    gpu_cost,
    replay,
    summary,
    tune,
    verdict,
)
from harness.report.compare import Comparison
from harness.report.compare_render import render_table, verdict_line
from harness.report.waterfall_table import waterfall_lines, waterfall_rows, waterfall_table
from harness.units import number, percent


def _s(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _pct(share: float | None) -> str:
    return "-" if share is None else percent(share)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _counts(d: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items())


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return out


def header(doc: dict[str, Any]) -> list[str]:
    pre = doc.get("preflight", {})
    sha = str(pre.get("compose_sha256", ""))[:12]
    bits = [f"target `{doc['target']}`", f"started {doc['started_at']}"]
    if doc.get("finished_at"):
        bits.append(f"finished {doc['finished_at']}")
    if doc.get("harness_version"):
        bits.append(f"harness {doc['harness_version']}")
    if sha:
        bits.append(f"compose {sha}")
    return [f"# Run {doc['run_id']}: {str(doc['status']).upper()}", "", " · ".join(bits), ""]


def what_ran(doc: dict[str, Any]) -> list[str]:
    """One line: the vLLM version each engine reported and the image ID of each container."""
    bits = []
    for name, facts in summary.what_ran(doc).items():
        parts = []
        if "version" in facts:
            parts.append(f"vLLM {facts['version']}")
        elif "version_error" in facts:
            parts.append(f"vLLM unknown ({facts['version_error']})")
        if "image" in facts:
            parts.append(f"image {facts['image']}")
        bits.append(f"`{name}` {', '.join(parts)}")
    return [f"Ran: {'; '.join(bits)}", ""] if bits else []


def acceptance(doc: dict[str, Any]) -> list[str]:
    out: list[str] = []
    r = summary.routing(doc)
    if r is not None:
        per = ", ".join(
            f"{route} P {v.get('precision', 0):.2f} R {v.get('recall', 0):.2f}"
            for route, v in r.get("per_route", {}).items()
        )
        out.append(
            f"- Routing accuracy **{percent(r['accuracy'])}** on {r.get('scored', '?')} items"
            + (f" ({per})" if per else "")
            + f"; fallbacks {r['fallbacks']}"
            + (f"; ambiguous items went {_counts(r['either'])}" if r.get("either") else "")
        )
    rows = summary.long_context(doc)
    if rows is not None:
        counts = summary.outcome_counts(rows)
        passed = counts[summary.OK] + counts[summary.FLAGGED]
        bad = ", ".join(f"{n} {k}" for k, n in counts.items() if n and k not in summary.PASSING)
        other = sum(x.outcome == summary.OK and x.got != x.route for x in rows)
        out.append(
            f"- Long context: {passed} of {len(rows)} passed"
            + (f"; **{bad}**" if bad else "")
            + (
                f"; {other} took the other route with the cue not last (not judged)"
                if other
                else ""
            )
        )
        for x in rows:
            if x.outcome not in summary.PASSING:
                seen = "" if x.seen_tokens is None else f", classifier saw {x.seen_tokens:,}"
                out.append(
                    f"  - {x.placement}/{x.route} at {x.tokens:,} tokens: {x.outcome} "
                    f"(HTTP {x.status}, {x.reason}{seen})"
                )
    for engine, kv in doc.get("acceptance", {}).get("kv_capacity", {}).items():
        conc = kv.get("log_max_concurrency")
        out.append(
            f"- KV capacity {engine}: {kv['log_tokens']:,} tokens"
            + (f" ({conc:.2f}x max-model-len)" if conc is not None else "")
            + kv_versus_prediction(kv)
        )
    det = doc.get("acceptance", {}).get("determinism")
    if det:
        out.append(
            f"- Determinism: {len(det.get('unstable', {}))} of {det.get('prompts')} "
            f"prompts changed route over {det.get('repeats')} repeats"
        )
    return ["## Acceptance", "", *out, ""] if out else []


def _ms(v: float | None) -> str:
    """Milliseconds, 3 significant figures; n/a where there is no value (e.g. the ITL of a
    route whose answers came in one read)."""
    return number(v)


def load(doc: dict[str, Any]) -> list[str]:
    profiles = summary.profiles(doc)
    if not profiles:
        return []
    lat_rows = [
        [
            f.profile,
            f.label,
            str(f.ok),
            _ms(f.ttft_p50_ms),
            _ms(f.ttft_p95_ms),
            _ms(f.itl_p50_ms),
            _ms(f.itl_p95_ms),
            _ms(f.tpot_p50_ms),
            number(f.output_tok_s),
            "n/a"
            if f.goodput_rps is None
            else f"{number(f.goodput_rps)} ({percent(f.goodput_share or 0, 2)})",
            str(f.failed),
        ]
        for f in summary.route_figures(doc)
    ]
    eng_rows = []
    for name, s in profiles.items():
        for engine, e in s.get("engines", {}).items():
            eng_rows.append(
                [
                    name,
                    engine,
                    percent(e.get("kv_usage_peak")),
                    _s(e.get("kv_usage_above_90_s"), 1),
                    f"{e.get('running_max', 0):.0f} / {e.get('max_num_seqs', '?')}",
                    f"{e.get('waiting_max', 0):.0f} ({e.get('waiting_capacity_max', 0):.0f})",
                    f"{e.get('preemptions', 0):.0f}",
                ]
            )
    out = ["## Load", ""]
    errs = [
        f"{n} {percent(s['error_rate'])} ({s['failed']:,}/{s['requests']:,})"
        for n, s in profiles.items()
    ]
    out += [f"Errors: {', '.join(errs)}", ""]
    lat_head = [
        "profile",
        "route",
        "ok",
        "TTFT p50 ms",
        "TTFT p95 ms",
        "ITL p50 ms",
        "ITL p95 ms",
        "TPOT p50 ms",
        "out tok/s",
        "goodput req/s",
    ]
    eng_head = ["profile", "engine", "KV peak", ">90% s", "running max", "waiting max (capacity)"]
    if lat_rows:
        out += [*_table([*lat_head, "failed"], lat_rows), ""]
    if eng_rows:
        out += [*_table([*eng_head, "preemptions"], eng_rows), ""]
    out += _routing_under_load(profiles)
    out += _waterfall(doc)
    out += [f"- {line}" for line in summary.client_engine(doc)]
    out += [f"- {pool.sentence()}" for pool in summary.kv_pools(doc)]
    reasons = summary.route_reasons_line(doc)
    if reasons:
        out.append(f"- Route reasons: {reasons}")
    scrape = [f"{n} {s['scrape_errors']}" for n, s in profiles.items() if s.get("scrape_errors")]
    if scrape:
        out.append(f"- Failed /metrics scrapes: {', '.join(scrape)}")
    for name, s in profiles.items():
        for e in s.get("errors", [])[:3]:
            out.append(f"- {name} error: {e}")
    files = ", ".join(f"{name} ({what})" for name, what in summary.RAW_FILES)
    out.append(f"- Raw data in `load/<profile>/`: {files}")
    return [*out, ""]


def _routing_under_load(profiles: dict[str, dict[str, Any]]) -> list[str]:
    """Each profile's confusion matrix of its labelled requests (expected x got), and its
    routing accuracy by requests in flight at send time."""
    runs = {
        n: s["routing"] for n, s in profiles.items() if (s.get("routing") or {}).get("labelled")
    }
    if not runs:
        return []
    got = sorted({g for r in runs.values() for row in r["confusion"].values() for g in row})
    rows = []
    for name, r in runs.items():
        for expected, row in r["confusion"].items():
            share = r.get("per_route", {}).get(expected, {}).get("accuracy")
            alone = ((r.get("drift") or {}).get(expected) or {}).get("accuracy_alone")
            rows.append(
                [name, expected, *(str(row.get(g, 0)) for g in got), _pct(share), _pct(alone)]
            )
    out = ["Routing under load (expected route by the route taken):", ""]
    heads = ["profile", "expected", *(f"got {g}" for g in got), "accuracy", "same prompts alone"]
    out += [*_table(heads, rows), ""]
    flights = [
        f"{name} "
        + ", ".join(
            f"{n}: {percent(v['accuracy'])} of {v['requests']}"
            for n, v in r["by_in_flight"].items()
        )
        for name, r in runs.items()
        if r.get("by_in_flight")
    ]
    if flights:
        out.append(f"- Routing accuracy by requests in flight at send time: {' · '.join(flights)}")
    return out


def _waterfall(doc: dict[str, Any]) -> list[str]:
    """Where each route's time to first token goes (harness.load.waterfall), in means."""
    found = waterfall_rows(doc)
    if not found:
        return []
    head, body = waterfall_table(found)
    out = ["", "Where the time to first token goes (means over each route's answers):", ""]
    return [*out, *_table(head, body), "", *(f"- {line}" for line in waterfall_lines(doc)), ""]


def comparison(c: Comparison) -> list[str]:
    out = ["## Comparison", "", f"**{verdict_line(c)}**", ""]
    if c.regression:
        out += ["```", render_table(c, only_interesting=True), "```", ""]
    return out


def preflight(doc: dict[str, Any]) -> list[str]:
    findings = doc.get("preflight", {}).get("findings", [])
    serious = [f for f in findings if f.get("severity") in ("error", "warning")]
    if not serious:
        return []
    out = ["## Preflight", ""]
    out += [f"- {f['severity'].upper()} {f['rule']}: {f['message']}" for f in serious]
    return [*out, ""]


def sessions(doc: dict[str, Any]) -> list[str]:
    """The router's session log over the run (telemetry.sessions, `harness sessions`)."""
    s = doc.get("telemetry", {}).get("sessions")
    if not s:
        return []
    rate = s.get("fallback_rate")
    causes = _counts(s.get("fallback_causes") or {})
    ms = s.get("classifier_ms") or {}
    window = f" since {s['since']}" if s.get("since") else ""
    return [
        "## Sessions",
        "",
        f"- {s['requests']} requests{window} (`{s['source']}`): routes {_counts(s['routes'])}",
        f"- Fallbacks {s['fallbacks']} of {s['classified']}"
        + (f" ({percent(rate)})" if rate is not None else "")
        + (f": {causes}" if causes else ""),
        f"- Classifier latency p50 {_s(ms.get('p50'), 0)} ms, p95 {_s(ms.get('p95'), 0)} ms; "
        f"errors {_counts(s.get('errors') or {}) or 'none'}",
        "",
    ]


def why_failed(doc: dict[str, Any]) -> list[str]:
    """The first block of a red run: the verdict, each violated SLO, each failed test with its
    message, each bring-up error with the service logs to read."""
    block = doc.get("why_failed") or {}
    if doc.get("status") == "passed" or not block:
        return []
    out = ["## Why it failed", "", f"**{verdict.verdict(str(doc['status']), block)}**", ""]
    for c in block.get("slos") or []:
        out.append(f"- SLO {verdict.slo_sentence(c)}")
    for t in block.get("tests") or []:
        where = "" if t.get("phase") in (None, "call") else f" ({t['phase']})"
        message = str(t.get("message") or "").splitlines() or [""]
        out.append(f"- Test `{t['nodeid']}`{where}: {message[0]}")
        out += [f"  {line}" for line in message[1:]]
    for b in block.get("bring_up") or []:
        logs = ", ".join(f"`{p}`" for p in b.get("logs") or []) or "no service log was written"
        out.append(f"- Bring-up: {b['error']} (logs: {logs})")
    return [*out, ""]


def slo_table(doc: dict[str, Any]) -> list[str]:
    """Every SLO the run was judged by: limit, measured, margin, verdict, where it is set."""
    rows = verdict.slo_rows(doc)
    if not rows:
        return []
    body = [
        [
            c["profile"],
            c.get("route") or "-",
            c["key"],
            verdict.slo_value(c["key"], c.get("limit")),
            verdict.slo_value(c["key"], c.get("value")),
            verdict.slo_value(c["key"], c.get("margin")),
            "ok" if c.get("passed") else "**BREACH**",
            c.get("source", ""),
        ]
        for c in rows
    ]
    head = ["profile", "route", "SLO", "limit", "measured", "margin", "verdict", "set in"]
    return ["## SLOs", "", *_table(head, body), ""]


def render_markdown(doc: dict[str, Any], comparison_: Comparison | None = None) -> str:
    parts = header(doc) + why_failed(doc) + tune.markdown(doc) + slo_table(doc) + what_ran(doc)
    if comparison_ is not None:
        parts += comparison(comparison_)
    results = acceptance(doc) + load(doc) + gpu_cost.markdown(doc)
    results += conversation.markdown(doc) + replay.markdown(doc)
    results += capacity.markdown(doc) + envelope.markdown(doc)
    results += sessions(doc)
    parts += preflight(doc) + (results or ["No acceptance or load results in this run.", ""])
    return "\n".join(parts).rstrip() + "\n"


def kv_versus_prediction(kv: dict[str, Any]) -> str:
    """The engine's KV pool against the VRAM model. On a twin the pool is set to the prediction
    (--num-gpu-blocks-override), so agreement there is forced, not measured, and says so."""
    pred, err = kv.get("predicted_tokens"), kv.get("prediction_error_pct")
    if pred is None or err is None:
        return ""
    check = kv.get("prediction_check")
    if check == "exact":
        return f", set to the predicted {pred:,} (twin: forced, not measured)"
    if check == "override":
        return f", sized by a --kv-tokens what-if, not the predicted {pred:,}"
    return f", predicted {pred:,} ({err:+.2f}%)"
