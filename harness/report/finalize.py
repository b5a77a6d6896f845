"""The end of a run: report.md and report.html from record.json, and the run's history line."""

from __future__ import annotations

import os
from pathlib import Path

from harness.report import history as run_history
from harness.report.compare import Comparison, Tolerances, compare
from harness.report.render_html import render_html
from harness.report.render_md import render_markdown
from harness.report.schema import load_record
from harness.report.summary import history_line

DEFAULT_TREND_RUNS = 30


def finalize_run(
    run_dir: Path,
    *,
    history: Path | None = None,
    trend_runs: int = DEFAULT_TREND_RUNS,
    baseline: Path | None = None,
    tolerances: Tolerances | None = None,
) -> list[Path]:
    """Render `report.md` and `report.html` into `run_dir` and record the run in the history.

    `history` is the history file (default `<reports root>/history.jsonl`); the run's line is
    added once, or replaced when the run is finalized again. The HTML gets trend plots over the
    last `trend_runs` runs against the same target (0: none). With `baseline` (a record.json),
    both reports carry the comparison. Returns the files written. Raises InputError for a
    corrupt or old record.
    """
    run_dir = Path(run_dir)
    doc = load_record(run_dir / "record.json")
    history = history or run_history.root_of(run_dir) / run_history.HISTORY
    run_history.append_history(history, history_line(doc, str(run_dir)))
    trend = (
        run_history.recent(run_history.read_history(history), trend_runs, doc["target"])
        if trend_runs
        else []
    )
    comparison: Comparison | None = None
    if baseline is not None:
        comparison = compare(doc, load_record(baseline), tolerances)
    written = []
    for name, text in (
        ("report.md", render_markdown(doc, comparison)),
        ("report.html", render_html(doc, run_dir, history=trend, comparison_=comparison)),
    ):
        path = run_dir / name
        tmp = path.with_name(name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        written.append(path)
    return written
