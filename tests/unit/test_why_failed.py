"""A red run says why, first: the record's why_failed block, its place at the top of report.md
and report.html, red tiles, the SLO table and limit lines, the one-line verdict, and a
long-context grid that paints only right routes green."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from report_fixtures import load_summary, long_context_rows, record, set_in

from harness.config import Settings
from harness.load.slo_checks import BUILT_IN, slo_checks
from harness.report import summary
from harness.report.record import RunRecord
from harness.report.render_html import (
    OTHER_ROUTE_FILL,
    OUTCOME_FILL,
    long_context_cell,
    render_html,
)
from harness.report.render_md import render_markdown
from harness.report.schema import validate_record
from harness.report.verdict import attach_slo_checks, failed_test, verdict, verdict_line

ENV = "HARNESS_SLO_STEADY_TWIN_LOCAL_P95_TTFT_S"
TOML = {
    "slo": {
        "steady": {
            "max_error_rate": 0.0,
            "twin": {"local": {"p95_ttft_s": 30.0}, "search": {"p95_ttft_s": 30.0}},
        }
    }
}
NODE = "tests/acceptance/test_routing.py::test_accuracy"
MESSAGE = "AssertionError: routing accuracy 0.80 < floor 0.90\nassert 0.8 >= 0.9\nmore\nand more"


def settings(environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    return Settings(Path("harness.toml"), TOML, overrides, environ or {})


def steady() -> dict[str, Any]:
    s = load_summary("steady")
    s["target"] = "twin"
    right = {"accuracy": 1.0, "correct": 20, "requests": 20}
    s["routing"] = {
        "labelled": 40,
        "correct": 40,
        "accuracy": 1.0,
        "per_route": {"local": right, "search": right},
        "confusion": {"local": {"local": 20}, "search": {"search": 20}},
        "by_in_flight": {"1": {"accuracy": 1.0, "correct": 40, "requests": 40}},
    }
    return s


def finished(tmp_path: Path, *, red: bool) -> tuple[dict[str, Any], Path]:
    """A run record finished the way the plugin finishes one: red with a breached SLO (set by
    the environment), a failed test and a bring-up error, or green."""
    run_dir = tmp_path / "runs" / "20261207T084758Z-twin"
    (run_dir / "logs").mkdir(parents=True)
    for name in ("vllm-router", "vllm-primary"):
        (run_dir / "logs" / f"{name}.log").write_text("...\n")
    rec = RunRecord(run_dir, "twin")
    base = record(run_dir.name)
    for section in ("stack", "acceptance"):
        rec.set_section(section, base[section])
    rec.put("load", "steady", steady())
    attach_slo_checks(rec.doc, settings({ENV: "0.05"} if red else {}), None)
    tests = []
    if red:
        rec.put("startup", "error", "vllm-router: not healthy within 10 s (last: not listening)")
        tests = [failed_test(NODE, "call", MESSAGE)]
    rec.finish("failed" if red else "passed", tests)
    return json.loads(rec.path.read_text()), run_dir


def test_a_red_record_opens_with_why_it_failed(tmp_path: Path) -> None:
    doc, run_dir = finished(tmp_path, red=True)
    validate_record(doc)
    assert list(doc)[: list(doc).index("why_failed") + 1][-2:] == ["status", "why_failed"]
    block = doc["why_failed"]
    assert block["verdict"].startswith("FAILED: 1 SLO, 1 test, 1 bring-up error, see ")
    assert block["verdict"].endswith(f"{run_dir}/report.md")
    (slo,) = block["slos"]
    assert (slo["profile"], slo["route"], slo["key"]) == ("steady", "local", "p95_ttft_s")
    assert slo["limit"] == 0.05 and slo["value"] == pytest.approx(1.7 * 1.8)
    assert slo["margin"] == pytest.approx(0.05 - 1.7 * 1.8) and not slo["passed"]
    assert slo["source"] == f"{ENV} (environment)"
    (test,) = block["tests"]
    assert test["nodeid"] == NODE and test["message"] == "\n".join(MESSAGE.splitlines()[:3])
    (up,) = block["bring_up"]
    assert up["logs"] == ["logs/vllm-router.log"] and "not healthy" in up["error"]


def test_report_md_names_the_slo_the_test_and_the_log_first(tmp_path: Path) -> None:
    doc, _ = finished(tmp_path, red=True)
    md = render_markdown(doc)
    first_screen = "\n".join(md.splitlines()[:30])
    assert "## Why it failed" in first_screen
    assert "**FAILED: 1 SLO, 1 test, 1 bring-up error**" in first_screen
    assert "SLO steady on twin, route local: p95_ttft_s measured 3,060 ms, limit 50 ms" in md
    assert f"set in {ENV} (environment)" in first_screen
    assert f"Test `{NODE}`: AssertionError: routing accuracy 0.80 < floor 0.90" in first_screen
    assert "`logs/vllm-router.log`" in first_screen
    assert md.index("## Why it failed") < md.index("## SLOs") < md.index("## Acceptance")
    assert re.search(r"\| steady \| local \| p95_ttft_s \| 50 ms \| 3,060 ms \| -3,010 ms \| "
                     r"\*\*BREACH\*\* \|", md)  # fmt: skip


def test_report_html_opens_with_why_it_failed_and_red_tiles(tmp_path: Path) -> None:
    doc, run_dir = finished(tmp_path, red=True)
    page = render_html(doc, run_dir)
    why = page.index('id="why-failed"')
    assert why < page.index('id="slos"') < page.index("<h2>Routing</h2>")
    block = page[why : page.index("</div>", why)]
    assert "p95_ttft_s measured 3,060 ms, limit 50 ms, margin -3,010 ms" in block
    assert ENV in block and NODE in block and "logs/vllm-router.log" in block
    red = re.findall(r'<div class="card red">([^<]*)<b', page)
    assert {"status", "SLOs met", "tests failed", "bring-up"} <= set(red)
    assert any(label.startswith("latency SLOs breached") for label in red)
    assert '<tr class="breach">' in page
    assert 'class="limit"' in page  # the p95 limit on the TTFT chart


def test_a_browser_shows_why_it_failed_on_the_first_screen(tmp_path: Path) -> None:
    """report.html in headless Chromium at 1280x900: the violated SLO with its value and limit,
    and the failed test's name, lie on the first screen, above anything one scrolls to."""
    from harness.errors import CapabilityError
    from harness.report.browser import HEIGHT, boxes, find_chromium

    try:
        find_chromium()
    except CapabilityError as exc:
        pytest.skip(f"headless check needs Debian's chromium: {exc}")
    doc, run_dir = finished(tmp_path, red=True)
    html = run_dir / "report.html"
    html.write_text(render_html(doc, run_dir), encoding="utf-8")
    found = boxes(html, ["#why-failed li", "#why-failed li code", "tr.breach"])
    slo = [b for b in found["#why-failed li"] if b["text"].startswith("SLO")]
    assert len(slo) == 1, found
    assert "p95_ttft_s measured 3,060 ms, limit 50 ms" in slo[0]["text"]
    test = [b for b in found["#why-failed li code"] if b["text"] == NODE]
    assert test, found
    row = found["tr.breach"]
    assert row and "50 ms" in row[0]["text"] and "3,060 ms" in row[0]["text"]
    for where, box in (("SLO", slo[0]), ("test", test[0]), ("SLO table row", row[0])):
        assert box["top"] >= 0, box
        assert box["bottom"] <= HEIGHT, f"{where} below the first screen: {box}"


def test_a_green_record_has_no_block(tmp_path: Path) -> None:
    doc, run_dir = finished(tmp_path, red=False)
    validate_record(doc)
    assert doc["why_failed"] == {"verdict": "PASSED", "slos": [], "tests": [], "bring_up": []}
    md, page = render_markdown(doc), render_html(doc, run_dir)
    assert "Why it failed" not in md and "why-failed" not in page
    assert "## SLOs" in md and "BREACH" not in md
    assert '<div class="card red">' not in page
    assert verdict_line(doc) == "PASSED"


def test_the_verdict_line() -> None:
    block = {"slos": [{}, {}], "tests": [{}], "bring_up": []}
    report = Path("reports/runs/20261207T084758Z-twin-load/report.md")
    assert verdict("failed", block, report) == (
        "FAILED: 2 SLOs, 1 test, see reports/runs/20261207T084758Z-twin-load/report.md"
    )
    assert verdict("passed", block, report) == "PASSED"
    assert verdict("failed", {}, None) == "FAILED: no cause recorded"
    assert verdict("interrupted", {"tests": [{}, {}]}, None) == "INTERRUPTED: 2 tests"


def test_each_limit_names_where_it_was_set() -> None:
    s = steady()
    file = {(c.key, c.route): c.source for c in slo_checks(settings(), s, "vllm-primary")}
    assert file[("p95_ttft_s", "local")] == "[slo.steady.twin.local] p95_ttft_s in harness.toml"
    assert file[("max_error_rate", None)] == "[slo.steady] max_error_rate in harness.toml"
    assert file[("routing_accuracy_floor", None)] == BUILT_IN
    env = {(c.key, c.route): c.source for c in slo_checks(settings({ENV: "1"}), s, "p")}
    assert env[("p95_ttft_s", "local")] == f"{ENV} (environment)"
    option = settings(**{"slo.steady.twin.search.p95_ttft_s": 2.0})
    opt = {(c.key, c.route): c.source for c in slo_checks(option, s, "p")}
    assert opt[("p95_ttft_s", "search")] == "option slo.steady.twin.search.p95_ttft_s"


def test_a_misrouted_cell_is_not_green() -> None:
    doc = set_in(record(), "acceptance.long_context", long_context_rows())
    rows = summary.long_context(doc) or []
    wrong = [x for x in rows if x.outcome == summary.OK and x.got != x.route]
    assert wrong, "the fixture has classified requests that took the other route"
    for x in wrong:
        text, fill = long_context_cell(x)
        assert fill != OUTCOME_FILL[summary.OK] and fill == OTHER_ROUTE_FILL
        assert "not judged" in text
    right = next(x for x in rows if x.outcome == summary.OK and x.got == x.route)
    assert long_context_cell(right)[1] == OUTCOME_FILL[summary.OK]
    page = render_html(doc)
    assert OTHER_ROUTE_FILL in page and "flagged: past max-model-len" in page


PLUGIN_CONFTEST = """
from pathlib import Path

import pytest

import harness.report.browser as browser
from harness import pytest_stack
from harness.errors import HarnessError
from harness.report.record import RunRecord


def no_browser(*args, **kwargs):
    raise HarnessError("no browser in this test")


browser.screenshot = no_browser


@pytest.fixture
def rec(pytestconfig):
    run_dir = Path(str(pytestconfig.rootpath)) / "reports" / "runs" / "20261207T084758Z-twin"
    run_dir.mkdir(parents=True, exist_ok=True)
    record = RunRecord(run_dir, "twin")
    pytestconfig.stash[pytest_stack._RECORD] = record
    return record
"""


def test_the_pytest_session_ends_with_the_verdict(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The inner session renders no report through Chromium and plants no secrets: CI's
    # switches for the outer session would add session checks this test does not make.
    for name in [k for k in os.environ if k.startswith("HARNESS_REQUIRE_")]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("HARNESS_PLANT_SECRETS", raising=False)
    pytester.makeconftest(PLUGIN_CONFTEST)
    pytester.makepyfile(
        test_x="def test_ok(rec):\n    pass\n\n"
        "def test_bad(rec):\n    assert 1 == 2, 'one is not two'\n"
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    lines = [line for line in result.outlines if line.strip()]
    assert lines[-1] == "FAILED: 1 test, see reports/runs/20261207T084758Z-twin/report.md"
    doc = json.loads((pytester.path / "reports/runs/20261207T084758Z-twin/record.json").read_text())
    (test,) = doc["why_failed"]["tests"]
    assert test["nodeid"] == "test_x.py::test_bad"
    assert test["message"].startswith("AssertionError: one is not two")
    md = (pytester.path / "reports/runs/20261207T084758Z-twin/report.md").read_text()
    assert "test_x.py::test_bad" in "\n".join(md.splitlines()[:12])


@pytest.mark.parametrize("broken", ["render", "console"])
def test_a_report_that_cannot_render_or_logs_errors_fails_the_session(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, broken: str
) -> None:
    """Every test passes, but the report the owner reads is missing or broken: not green."""
    for name in [k for k in os.environ if k.startswith("HARNESS_REQUIRE_")]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("HARNESS_PLANT_SECRETS", raising=False)
    patch = (
        "import harness.report.finalize as finalize\n"
        "def broken_finalize(run_dir):\n"
        "    raise HarnessError('record.json does not validate')\n"
        "finalize.finalize_run = broken_finalize\n"
        if broken == "render"
        else "browser.screenshot = lambda *a, **k: ['Uncaught TypeError: x is undefined']\n"
    )
    pytester.makeconftest(PLUGIN_CONFTEST + patch)
    pytester.makepyfile(test_x="def test_ok(rec):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.outlines[-10:]
    want = "could not be rendered" if broken == "render" else "logs a console error"
    assert any(want in line for line in result.outlines), result.outlines[-10:]


def test_a_session_check_that_fails_after_the_record_marks_the_run_failed(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every test passes, then a required capability fails a session check: the record, the
    report and the history line must not say passed."""
    for name in [k for k in os.environ if k.startswith("HARNESS_REQUIRE_")]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("HARNESS_PLANT_SECRETS", raising=False)
    monkeypatch.setenv("HARNESS_REQUIRE_CHROMIUM", "1")  # the conftest's browser always fails
    pytester.makeconftest(PLUGIN_CONFTEST)
    pytester.makepyfile(test_x="def test_ok(rec):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.outlines[-10:]
    run_dir = pytester.path / "reports/runs/20261207T084758Z-twin"
    assert json.loads((run_dir / "record.json").read_text())["status"] == "failed"
    assert (run_dir / "report.md").read_text().startswith("# Run 20261207T084758Z-twin: FAILED")
    history = (pytester.path / "reports/history.jsonl").read_text().splitlines()
    assert len(history) == 1 and json.loads(history[0])["status"] == "failed"
    assert result.outlines[-1].startswith("FAILED: 1 session check")
