"""`harness tune --judge capacity` in the verification run's reports: the change, the verdict,
the capacity before and after with their intervals and trials, the reasons the judge gave, and
with `--envelope` the safe envelope's difference (harness.tune_envelope)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.report.svg import esc, md_table, table
from harness.tune_envelope import lines as envelope_lines
from harness.units import number

CHANGED_HEAD = ["engine", "prompt tokens", "concurrency", "before", "after"]


def _section(doc: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return (doc.get("tune") or {}).get("capacity") or None


def capacity_text(c: Mapping[str, Any]) -> str:
    """'4 req/s (interval 4-8, primary slots; 2 and 2 trial(s) at its ends)'."""
    lo, hi = c["interval_rps"]
    trials = c.get("trials") or [None, None]
    ends = f"{trials[0]}" + ("" if hi is None else f" and {trials[1]}")
    return (
        f"{number(c['capacity_rps'])} req/s (interval {number(lo)}-"
        f"{'open' if hi is None else number(hi)}, {c.get('limiting_resource', '?')}; {ends} "
        "trial(s) at its ends)"
    )


def lines(doc: Mapping[str, Any]) -> list[str]:
    """The tune's decision in a few lines; [] when this run was no capacity-judged tune."""
    sec = _section(doc)
    if sec is None:
        return []
    changes = ", ".join(sec.get("changes") or ()) or "see the engine arguments"
    verdict = "keep" if sec["keep"] else "roll back"
    out = [
        f"change: {changes}",
        f"verdict: {verdict}; acceptance {'passed' if sec['acceptance_passed'] else 'failed'}, "
        f"capacity {sec['change']}",
        f"capacity before: {capacity_text(sec['before'])}",
        f"capacity after: {capacity_text(sec['after'])}",
        *sec.get("lines", ())[3:],  # the judge's reasons, after the three lines restated above
    ]
    envelope = (doc.get("tune") or {}).get("envelope")
    if envelope is not None:
        out += [line.strip() for line in envelope_lines(envelope)]
    return out


def changed_rows(doc: Mapping[str, Any]) -> list[list[object]]:
    envelope = (doc.get("tune") or {}).get("envelope") or {}
    return [
        [e["engine"], f"{c['prompt_tokens']:,}", c["concurrency"], c["before"], c["after"]]
        for e in envelope.get("engines", ())
        for c in e["changed"]
    ]


def markdown(doc: Mapping[str, Any]) -> list[str]:
    """report.md's tune section; [] when this run was no capacity-judged tune."""
    found = lines(doc)
    if not found:
        return []
    out = ["## Tune, judged by capacity", "", *(f"- {line}" for line in found), ""]
    rows = changed_rows(doc)
    if rows:
        out += ["Envelope cells that changed:", "", *md_table(CHANGED_HEAD, rows), ""]
    return out


def html(doc: Mapping[str, Any]) -> str:
    """report.html's tune section; '' when this run was no capacity-judged tune."""
    found = lines(doc)
    if not found:
        return ""
    items = "".join(f"<li>{esc(line)}</li>" for line in found)
    rows = changed_rows(doc)
    cells = "<h3>Envelope cells that changed</h3>" + table(CHANGED_HEAD, rows) if rows else ""
    return f'<h2 id="tune">Tune, judged by capacity</h2><ul>{items}</ul>{cells}'
