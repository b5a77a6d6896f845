"""A comparison as people read it: each row's cells in its metric's unit, the terminal's table
and the verdict line under it."""

from __future__ import annotations

from collections.abc import Callable

from harness.report.compare import (
    CHANGED,
    COMPOSE_METRIC,
    NOT_COMPARABLE,
    NOT_COMPARED,
    OK,
    Comparison,
    Row,
    Value,
)
from harness.report.compose_hash import shown
from harness.units import count, ms, number, percent


def unit_of(metric: str) -> Callable[[float], str]:
    """How a metric's numbers are printed for people: latencies (`..._s`) in ms, rates and
    accuracies in %, tokens and counts whole with thousands separators."""
    if metric.endswith("_s"):
        return ms
    if metric.endswith(("_rate", "accuracy")):
        return percent
    if metric.endswith((".tokens", ".preemptions", ".failures")) or metric.startswith("fallbacks."):
        return count
    return number


def _cell(v: Value, metric: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return shown(v) if metric == COMPOSE_METRIC else v
    return unit_of(metric)(v)


def cells(r: Row) -> tuple[str, str, str, str]:
    """A row's baseline, current, delta and limit as people read them (the limit without its
    bound sign); --json keeps the raw values."""
    unit = unit_of(r.metric)
    if r.delta is None:
        delta = "-"
    elif unit is count:
        delta = f"{r.delta:+,.0f}"
    else:
        delta = unit(r.delta) if r.delta == 0 else _signed(unit, r.delta)
    limit = "-" if r.limit is None else _cell(r.limit, r.metric)
    return _cell(r.baseline, r.metric), _cell(r.current, r.metric), delta, limit


def _signed(unit: Callable[..., str], v: float) -> str:
    return str(unit(v, signed=True))


def render_table(c: Comparison, *, only_interesting: bool = False) -> str:
    """A plain-text table for the terminal, then the verdict."""
    rows = [r for r in c.rows if not only_interesting or r.verdict != OK]
    head = ("metric", "baseline", "current", "delta", "limit", "verdict")
    body = []
    for r in rows:
        base, cur, delta, limit = cells(r)
        if r.limit is not None:
            limit = ("<= " if r.bound == "max" else ">= ") + limit
        verdict = r.verdict + (f" ({_reason(r)})" if _reason(r) else "")
        body.append((r.metric, base, cur, delta, limit, verdict))
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(5)]
    lines = [f"{c.current_id} against baseline {c.baseline_id}"]
    for row in [head, *body]:
        lines.append(
            "  ".join(x.ljust(w) for x, w in zip(row[:5], widths, strict=True)) + "  " + row[5]
        )
    lines.append(verdict_line(c))
    return "\n".join(lines)


def past_limit(r: Row) -> bool:
    """The current value lies beyond the row's limit (whatever the verdict)."""
    if r.limit is None or not isinstance(r.current, int | float):
        return False
    if r.bound == "max":
        return float(r.current) > r.limit + 1e-12
    if r.bound == "min":
        return float(r.current) < r.limit - 1e-12
    return False


def _reason(r: Row) -> str:
    """What the text table says beside the verdict: the note of every row that is not plainly
    ok, and of an ok row whose value is past its limit (judged within noise)."""
    if r.verdict == OK and past_limit(r):
        return f"within noise: {r.note}" if r.note else "past the limit, judged within noise"
    if r.verdict == OK and "forced: " in r.note:  # compared although the runs differ: say how
        return r.note[r.note.index("forced: ") :]
    return r.note if r.verdict != OK else ""


def verdict_line(c: Comparison) -> str:
    compared = sum(r.verdict not in (NOT_COMPARED, NOT_COMPARABLE) for r in c.rows)
    skipped = sum(r.verdict == NOT_COMPARED for r in c.rows)
    tail = f"{compared} metrics compared, {skipped} not compared"
    unlike_rows = {r.metric.split(".")[1]: r.note for r in c.rows if r.verdict == NOT_COMPARABLE}
    if c.unlike_compose:
        tail += (
            f"; NOT COMPARABLE, another compose file than the baseline's: {c.unlike_compose} "
            "(a baseline run with the same compose file, or --force)"
        )
    elif unlike_rows:
        tail += "; NOT COMPARABLE, other settings than the baseline's: " + "; ".join(
            f"load.{p} ({why})" for p, why in unlike_rows.items()
        )
        tail += " (a baseline of the same kind of run, or --force)"
    changed = [r.metric for r in c.rows if r.verdict == CHANGED]
    if changed:
        tail += f"; changed: {', '.join(changed)}"
    if not c.regression:
        return f"no regression against {c.baseline_id}: {tail}"
    names = ", ".join(r.metric for r in c.regressions)
    return f"REGRESSION against {c.baseline_id}: {names} ({tail})"
