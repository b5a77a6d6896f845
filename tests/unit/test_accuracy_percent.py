"""Routing accuracy reads as a percentage wherever people read it: the console's failure
messages, report.md, report.html and `harness compare`'s table ("94.2 %", not 0.942);
record.json and `--json` keep the share."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import report_fixtures as fixtures

from harness.report.compare import Comparison, Row, compare
from harness.report.compare_render import render_table
from harness.report.render_html import render_html
from harness.report.render_md import render_markdown
from harness.report.verdict import slo_value
from harness.routing.metrics import Outcome, acceptance_problems, summarize

ACCURACY = 0.94167


def record() -> dict[str, Any]:
    return fixtures.set_in(fixtures.record(), "acceptance.routing.accuracy", ACCURACY)


def test_report_md_prints_accuracy_in_percent() -> None:
    md = render_markdown(record())
    assert "Routing accuracy **94.2 %**" in md
    assert "0.942" not in md


def test_report_html_prints_accuracy_in_percent(tmp_path: Path) -> None:
    html = render_html(record(), fixtures.write_run(tmp_path, record()))
    assert "94.2 %" in html and "0.942" not in html
    assert "accuracy <b>94.2 %</b>" in html


def test_compare_table_prints_accuracy_in_percent_and_json_keeps_the_share() -> None:
    c = compare(record(), fixtures.record())
    line = next(ln for ln in render_table(c).splitlines() if ln.startswith("routing.accuracy"))
    assert "94.2 %" in line and "0.942" not in line
    row = next(r for r in c.to_dict()["rows"] if r["metric"] == "routing.accuracy")
    assert row["current"] == ACCURACY
    dropped = Row("routing.accuracy", 0.9667, 0.9, 0.9467, "min", "regression", "may drop 2 points")
    line = render_table(Comparison("cur", "base", (dropped,))).splitlines()[2]
    assert line.split()[1:5] == ["96.7", "%", "90", "%"] and ">= 94.7 %" in line


def test_the_floor_in_the_slo_table_is_a_percentage() -> None:
    assert slo_value("routing_accuracy_floor", 0.9) == "90 %"


def test_the_console_failure_names_accuracy_and_floor_in_percent() -> None:
    outcomes = [
        Outcome(f"l{n}", "local", "local" if n < 16 else "search", "classified") for n in range(17)
    ]
    outcomes += [Outcome(f"s{n}", "search", "search", "classified") for n in range(2)]
    (problem,) = acceptance_problems(summarize(outcomes, ("local", "search")), 0.95)
    assert problem.startswith("routing accuracy 94.7 % (18 of 19 items) is below the floor 95 %")


def test_record_json_keeps_the_share(tmp_path: Path) -> None:
    run_dir = fixtures.write_run(tmp_path, record())
    doc = json.loads((run_dir / "record.json").read_text())
    assert doc["acceptance"]["routing"]["accuracy"] == ACCURACY
