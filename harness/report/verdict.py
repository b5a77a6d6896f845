"""Why a run failed, first: the record's `why_failed` block and the one-line verdict.

The block lists each violated SLO (the rows of `load.<profile>.slo`: value, limit, margin and
where the limit was set), each failed test by node id with the first lines of its assertion
message, and each bring-up error with the service's log in the run directory. A green run's
block holds only its verdict, "PASSED". report.md, report.html, the pytest session's last line
and `harness run` / `harness load` all read it from here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from harness.config import Settings
from harness.load.slo_checks import slo_checks
from harness.units import count, ms, number, percent

MESSAGE_LINES = 3
MESSAGE_CHARS = 400


def attach_slo_checks(doc: dict[str, Any], settings: Settings, primary: str | None) -> None:
    """Judge every load summary in `doc` and put its rows in `load.<profile>.slo`."""
    primary = primary or primary_name(doc)
    for summary in (doc.get("load") or {}).values():
        if isinstance(summary, dict) and "latency" in summary and "profile" in summary:
            summary["slo"] = [c.as_dict() for c in slo_checks(settings, summary, primary)]


def primary_name(doc: Mapping[str, Any]) -> str:
    services = (doc.get("stack") or {}).get("services") or {}
    for name, facts in services.items():
        if isinstance(facts, dict) and facts.get("role") == "primary":
            return str(name)
    return "vllm-primary"


def failed_test(nodeid: str, phase: str, message: str) -> dict[str, str]:
    """One failed test: its node id, the phase that failed, and the message's first lines."""
    lines = [line for line in str(message).strip().splitlines() if line.strip()]
    text = "\n".join(lines[:MESSAGE_LINES])
    if len(text) > MESSAGE_CHARS:
        text = text[: MESSAGE_CHARS - 3] + "..."
    return {"nodeid": nodeid, "phase": phase, "message": text}


def violated_slos(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for summary in (doc.get("load") or {}).values():
        if isinstance(summary, dict):
            out += [dict(c) for c in summary.get("slo") or [] if not c.get("passed")]
    return out


def bring_up_errors(doc: Mapping[str, Any], run_dir: Path) -> list[dict[str, Any]]:
    """The startup error, if any, with the log of each service it names (all logs when it
    names none) as paths relative to the run directory."""
    error = (doc.get("startup") or {}).get("error")
    if not error:
        return []
    logs = sorted(p.relative_to(run_dir).as_posix() for p in (run_dir / "logs").glob("*.log"))
    named = [p for p in logs if re.search(rf"\b{re.escape(Path(p).stem)}\b", str(error))]
    return [{"error": str(error), "logs": named or logs}]


def why_failed(
    doc: Mapping[str, Any], run_dir: Path, failed_tests: Iterable[Mapping[str, str]] = ()
) -> dict[str, Any]:
    """The block for `doc` once its status is final."""
    block: dict[str, Any] = {
        "slos": violated_slos(doc),
        "tests": [dict(t) for t in failed_tests],
        "bring_up": bring_up_errors(doc, run_dir),
    }
    block["verdict"] = verdict(str(doc.get("status")), block, run_dir / "report.md")
    return {"verdict": block.pop("verdict"), **block}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def verdict(status: str, block: Mapping[str, Any], report: Path | None = None) -> str:
    """`PASSED`, or `FAILED: 2 SLOs, 1 test, see reports/runs/<id>/report.md`."""
    if status == "passed":
        return "PASSED"
    causes = [
        _plural(len(block.get(key) or []), word)
        for key, word in (("slos", "SLO"), ("tests", "test"), ("bring_up", "bring-up error"))
        if block.get(key)
    ]
    head = "INTERRUPTED" if status == "interrupted" else "FAILED"
    where = f"see {_relative(report)}" if report is not None else ""
    return f"{head}: " + ", ".join([*causes, where] if where else causes or ["no cause recorded"])


def verdict_line(doc: Mapping[str, Any], run_dir: Path | None = None) -> str:
    """The console's last line for a finished run's record."""
    block = doc.get("why_failed") or {}
    if block.get("verdict"):
        return str(block["verdict"])
    report = run_dir / "report.md" if run_dir is not None else None
    return verdict(str(doc.get("status")), block, report)


def _relative(path: Path) -> str:
    """Relative to the working directory when the path lies below it, else absolute."""
    try:
        shown = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if shown.startswith("..") else shown


def slo_rows(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every SLO row of the run, failed first, in profile order otherwise."""
    rows = [
        dict(c)
        for summary in (doc.get("load") or {}).values()
        if isinstance(summary, dict)
        for c in summary.get("slo") or []
    ]
    return sorted(rows, key=lambda c: bool(c.get("passed")))


def route_limit(summary: Mapping[str, Any], route: str, key: str) -> float | None:
    """The limit of a route's latency key (p95_ttft_s, ...) in a load summary's SLO rows."""
    for c in summary.get("slo") or []:
        if c.get("route") == route and c.get("key") == key and c.get("limit") is not None:
            return float(c["limit"])
    return None


def slo_value(key: str, v: float | None) -> str:
    """A limit, value or margin in the unit people read it in: ms for latencies, % for rates
    and KV usage, plain counts otherwise."""
    if v is None:
        return "n/a"
    if key.startswith("p95_") or key.endswith("_s"):
        return ms(v)
    if key in ("max_error_rate", "max_fallback_rate", "min_kv_peak", "routing_accuracy_floor"):
        return percent(v)
    if key == "kv_peak_tolerance":
        return f"{v:.3f}"
    if key == "max_rss_growth_mib":
        return f"{count(v)} MiB"
    return count(v) if float(v).is_integer() else number(v)


def slo_where(c: Mapping[str, Any]) -> str:
    """`steady on twin, route local`."""
    where = str(c.get("profile"))
    if c.get("target"):
        where += f" on {c['target']}"
    if c.get("route"):
        where += f", route {c['route']}"
    return where


def slo_sentence(c: Mapping[str, Any]) -> str:
    """One violated SLO: where, key, value against limit, margin, and where the limit is set."""
    key = str(c["key"])
    text = f"{slo_where(c)}: {key} measured {slo_value(key, c.get('value'))}"
    if c.get("limit") is not None:
        text += f", limit {slo_value(key, c['limit'])}"
    if c.get("margin") is not None:
        text += f", margin {slo_value(key, c['margin'])}"
    if c.get("note"):
        text += f" ({c['note']})"
    return text + f"; set in {c.get('source')}"
