"""Capacity over time: the history line of a `harness capacity` run carries its knee, and
report.html of any run of that target draws the capacity trend from the history."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import capacity_fixtures as cf
import report_fixtures as fixtures

from harness.report import capacity_trend
from harness.report.finalize import finalize_run
from harness.report.history import read_history
from harness.report.html_load import trends
from harness.report.summary import history_line


def capacity_line(day: int, rps: float, hi: float | None, **kw: Any) -> dict[str, Any]:
    run_id = f"202611{day:02d}T050000Z-twin-capacity"
    return history_line(cf.capacity_record(run_id, rps, (rps - 0.3, hi), **kw))


def nightly_line(day: int) -> dict[str, Any]:
    return history_line(fixtures.record(f"202611{day:02d}T062715Z-twin"))


def test_the_history_line_of_a_capacity_run_carries_the_knee() -> None:
    line = capacity_line(20, 2.4, 2.8, resource="primary KV pool", profile="kv-pressure")
    assert line["capacity"] == {
        "profile": "kv-pressure",
        "capacity_rps": 2.4,
        "interval_rps": [2.1, 2.8],
        "capacity_tok_s": 96.0,
        "interval_tok_s": [84.0, 112.0],
        "limiting_resource": "primary KV pool",
    }
    assert nightly_line(21)["capacity"] is None


def test_the_trend_has_a_point_per_capacity_run_and_marks_the_latest() -> None:
    history = [
        capacity_line(20, 2.1, 2.5),
        nightly_line(21),
        capacity_line(22, 1.6, None, resource="primary KV pool"),
        nightly_line(23),
        capacity_line(24, 2.6, 2.9),
    ]
    page = trends(history)
    found = re.search(r'<svg id="plot-trend-capacity-steady".*?</svg>', page, re.S)
    assert found, page
    plot = found.group(0)
    points = re.findall(r'<g(?: class="latest")?><title>([^<]*)</title>', plot)
    assert len(points) == 3  # the nightly runs carry no capacity
    assert points[0].startswith("20261120T050000Z-twin-capacity: 2.1 req/s (interval 1.8-2.5")
    assert "limited by primary KV pool" in points[1] and "at least 1.3" in points[1]
    latest = re.findall(r'<g class="latest"><title>([^<]*)</title>', plot)
    assert latest == [points[2]] and latest[0].startswith("latest: 20261124")
    assert "latest 2.6" in plot
    assert plot.count('<g class="interval">') == 3
    assert plot.count('stroke-dasharray="3 2"') == 1  # the interval open upwards
    assert ">primary slots<" in plot and ">primary KV pool<" in plot  # the legend
    assert "11-24 05:00" in plot
    assert "Capacity trend" not in page


def test_no_trend_with_fewer_than_two_capacity_runs() -> None:
    one = trends([nightly_line(20), capacity_line(21, 2.1, 2.5), nightly_line(22)])
    assert "plot-trend-capacity" not in one
    assert "Capacity trend (steady): 1 capacity run among the last 3 runs; a trend needs 2." in one
    none = trends([nightly_line(20), nightly_line(21)])
    assert "plot-trend-capacity" not in none
    assert "Capacity trend: no `harness capacity` run among the last 2 runs" in none
    assert 'id="plot-trend-accuracy"' in none


def test_each_profile_gets_its_own_trend() -> None:
    history = [
        capacity_line(20, 2.1, 2.5),
        capacity_line(21, 0.9, 1.1, profile="kv-pressure"),
        capacity_line(22, 2.2, 2.6),
    ]
    plots, notes = capacity_trend.html(history)
    assert len(plots) == 1 and 'id="plot-trend-capacity-steady"' in plots[0]
    assert notes == [
        "Capacity trend (kv-pressure): 1 capacity run among the last 3 runs; a trend needs 2."
    ]


def test_the_nightly_report_shows_the_capacity_trend(tmp_path: Path) -> None:
    for day, rps in ((22, 2.1), (23, 2.4)):
        run_id = f"202611{day}T050000Z-twin-capacity"
        doc = cf.capacity_record(run_id, rps, (rps - 0.3, rps + 0.4))
        finalize_run(fixtures.write_run(tmp_path, doc, timelines=False))
    nightly = fixtures.write_run(tmp_path, fixtures.record("20261126T062715Z-twin"))
    finalize_run(nightly)
    history = read_history(tmp_path / "history.jsonl")
    assert [e["capacity"] and e["capacity"]["capacity_rps"] for e in history] == [2.1, 2.4, None]
    page = (nightly / "report.html").read_text()
    assert 'id="plot-trend-capacity-steady"' in page
    assert "latest: 20261123T050000Z-twin-capacity: 2.4 req/s" in page
