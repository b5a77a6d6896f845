"""Compare against a baseline: tolerances, regressions named, missing metrics not compared;
and the `harness report | compare | baseline` commands with their exit codes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
import report_fixtures as fixtures

from harness.cli import report as cli_report
from harness.config import load_settings
from harness.report.compare import (
    NOT_COMPARED,
    OK,
    REGRESSION,
    Comparison,
    Tolerances,
    compare,
    tolerances,
)

CUR = "20261127T062715Z-twin"


def current(**changes: Any) -> dict[str, Any]:
    doc = fixtures.record(CUR, started_at="2026-11-27T06:27:15Z")
    for dotted, value in changes.items():
        doc = fixtures.set_in(doc, dotted.replace("__", "."), value)
    return doc


def row(c: Comparison, metric: str) -> Any:
    return next(r for r in c.rows if r.metric == metric)


def test_identical_records_do_not_regress() -> None:
    c = compare(current(), fixtures.record())
    assert not c.regression
    assert {r.verdict for r in c.rows} == {OK}
    metrics = {r.metric for r in c.rows}
    assert {
        "routing.accuracy",
        "long_context.failures",
        "load.steady.local.ttft_p95_s",
        "load.ramp.search.itl_p95_s",
        "load.steady.vllm-primary.preemptions",
        "kv_capacity.vllm-primary.tokens",
        "load.kv-pressure.error_rate",
    } <= metrics


def test_p95_ttft_40_percent_slower_on_steady_local_is_named() -> None:
    base = fixtures.record()
    p95 = base["load"]["steady"]["latency"]["local"]["ttft_s"]["p95"]
    c = compare(current(**{"load.steady.latency.local.ttft_s.p95": p95 * 1.4}), base)
    assert c.regression
    assert [r.metric for r in c.regressions] == ["load.steady.local.ttft_p95_s"]
    r = row(c, "load.steady.local.ttft_p95_s")
    assert r.limit == pytest.approx(p95 * 1.15) and r.delta == pytest.approx(p95 * 0.4)
    assert "+15%" in r.note


def test_growth_within_the_absolute_slack_is_noise() -> None:
    base = fixtures.set_in(fixtures.record(), "load.steady.latency.search.ttft_s.p95", 0.10)
    c = compare(current(**{"load.steady.latency.search.ttft_s.p95": 0.14}), base)  # +40%, +0.04 s
    assert row(c, "load.steady.search.ttft_p95_s").verdict == OK
    c = compare(current(**{"load.steady.latency.search.ttft_s.p95": 0.16}), base)
    assert row(c, "load.steady.search.ttft_p95_s").verdict == REGRESSION


@pytest.mark.parametrize(("accuracy", "verdict"), [(0.9167, REGRESSION), (0.9567, OK)])
def test_routing_accuracy_may_drop_two_points(accuracy: float, verdict: str) -> None:
    c = compare(current(acceptance__routing__accuracy=accuracy), fixtures.record())
    assert row(c, "routing.accuracy").verdict == verdict
    assert c.regression is (verdict == REGRESSION)


def test_a_metric_missing_on_one_side_is_not_compared() -> None:
    base = fixtures.record()
    no_search = fixtures.set_in(base, "load.steady.latency.search", fixtures.DELETE)
    c = compare(current(), no_search)
    r = row(c, "load.steady.search.ttft_p95_s")
    assert r.verdict == NOT_COMPARED and r.note == "missing in the baseline"
    assert not c.regression
    c = compare(fixtures.set_in(current(), "load", {}), base)
    assert row(c, "load.ramp.error_rate").verdict == NOT_COMPARED
    assert row(c, "load.ramp.error_rate").note == "missing in the current run"
    assert not c.regression
    c = compare(current(), fixtures.set_in(base, "acceptance.routing", fixtures.DELETE))
    assert row(c, "routing.accuracy").verdict == NOT_COMPARED


def test_too_few_samples_are_not_compared() -> None:
    c = compare(
        current(
            **{
                "load.steady.latency.local.ttft_s.n": 3.0,
                "load.steady.latency.local.ttft_s.p95": 99.0,
            }
        ),
        fixtures.record(),
    )
    r = row(c, "load.steady.local.ttft_p95_s")
    assert r.verdict == NOT_COMPARED and "n=3 < min_samples 5" in r.note


def test_any_new_preemption_at_steady_but_not_at_saturate() -> None:
    c = compare(
        current(
            **{
                "load.steady.engines.vllm-primary.preemptions": 1.0,
                "load.saturate.engines.vllm-primary.preemptions": 4.0,
            }
        ),
        fixtures.record(),
    )
    assert [r.metric for r in c.regressions] == ["load.steady.vllm-primary.preemptions"]
    assert not any(r.metric == "load.saturate.vllm-primary.preemptions" for r in c.rows)


def test_fallbacks_and_long_context_failures_regress_on_their_own() -> None:
    doc = current()
    doc["acceptance"]["long_context"][2]["classifier_prompt_tokens"] = 100  # silent truncation
    doc["acceptance"]["long_context"][4]["reason"] = "fallback:timeout"
    doc["acceptance"]["routing"]["fallbacks"] = 1
    c = compare(
        doc, fixtures.set_in(fixtures.record(), "acceptance", {})
    )  # the baseline had no acceptance
    assert {r.metric for r in c.regressions} == {
        "fallbacks.routing",
        "fallbacks.long_context",
        "fallbacks.long_context_silent",
        "long_context.failures",
    }
    assert "1 fallback, 1 truncated" in row(c, "long_context.failures").note


def test_error_rate_increase_and_status_regress() -> None:
    c = compare(current(**{"load.ramp.error_rate": 0.05}, status="failed"), fixtures.record())
    assert {r.metric for r in c.regressions} == {"load.ramp.error_rate", "run.status"}


def test_tolerances_come_from_harness_toml_and_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = tmp_path / "harness.toml"
    toml.write_text(
        "[compare]\nttft_p95_growth = 0.5\naccuracy_drop = 0.1\n"
        'no_new_preemptions = ["steady", "ramp"]\n'
    )
    monkeypatch.setenv("HARNESS_COMPARE_MIN_SAMPLES", "10")
    tol = tolerances(load_settings(toml))
    assert tol.ttft_p95_growth == 0.5 and tol.accuracy_drop == 0.1 and tol.min_samples == 10
    assert tol.no_new_preemptions == ("steady", "ramp")
    assert tol.ttft_p95_slack_s == Tolerances().ttft_p95_slack_s
    monkeypatch.setenv("HARNESS_COMPARE_NO_NEW_PREEMPTIONS", "steady, kv-pressure")
    assert tolerances(load_settings(toml)).no_new_preemptions == (
        "steady",
        "kv-pressure",
    )
    base = fixtures.record()
    p95 = base["load"]["steady"]["latency"]["local"]["ttft_s"]["p95"]
    c = compare(current(**{"load.steady.latency.local.ttft_s.p95": p95 * 1.4}), base, tol)
    assert not c.regression


# --- the CLI -------------------------------------------------------------------------------


@pytest.fixture
def reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_REPORTS_DIR", str(tmp_path))
    monkeypatch.setenv("HARNESS_CONFIG", str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text("")
    return tmp_path


def harness(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = _main_with_report(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _main_with_report(argv: list[str]) -> int:
    """`harness` with the report commands, registered or not yet registered in cli.py."""
    import harness.cli as cli

    original = cli.build_parser

    def build() -> argparse.ArgumentParser:
        parser = original()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        if "compare" not in sub.choices:
            cli_report.add_parsers(sub)
        return parser

    cli.build_parser = build  # type: ignore[assignment]
    try:
        return cli.main(argv)
    finally:
        cli.build_parser = original  # type: ignore[assignment]


def test_cli_compare_exit_codes(reports: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = fixtures.write_run(reports, fixtures.record())
    same = fixtures.write_run(reports, current())
    code, out, _ = harness(capsys, "compare", CUR, "--baseline", str(base))
    assert code == 0, out
    assert "no regression against 20261126T062715Z-twin" in out
    assert "routing.accuracy" in out and "load.steady.local.ttft_p95_s" in out

    p95 = fixtures.record()["load"]["steady"]["latency"]["local"]["ttft_s"]["p95"]
    fixtures.write_run(reports, current(**{"load.steady.latency.local.ttft_s.p95": p95 * 1.4}))
    code, out, _ = harness(capsys, "compare", str(same), "--baseline", str(base / "record.json"))
    assert code == 1
    line = next(ln for ln in out.splitlines() if ln.startswith("load.steady.local.ttft_p95_s"))
    assert "regression" in line
    assert "REGRESSION against 20261126T062715Z-twin: load.steady.local.ttft_p95_s" in out

    code, out, _ = harness(capsys, "compare", CUR, "--baseline", str(base), "--json")
    doc = json.loads(out)
    assert code == 1 and doc["regression"] is True


def test_cli_compare_bad_input_exits_2(reports: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fixtures.write_run(reports, current())
    bad = reports / "bad.json"
    bad.write_text(json.dumps(fixtures.record(schema_version=0)))
    code, _, err = harness(capsys, "compare", CUR, "--baseline", str(bad))
    assert code == 2 and f"{bad}: field schema_version" in err
    code, _, err = harness(capsys, "compare", CUR)  # nothing pinned, no history
    assert code == 2 and "harness baseline set RUN" in err
    code, _, err = harness(capsys, "compare", "20990101T000000Z-twin", "--baseline", str(bad))
    assert code == 2 and "no run there" in err


def test_cli_baseline_set_then_compare_and_last_green(
    reports: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = fixtures.write_run(reports, fixtures.record())
    code, out, _ = harness(capsys, "baseline", "set", old.name)
    assert code == 0 and "baseline is now 20261126T062715Z-twin" in out
    assert (reports / "baseline.json").is_file()
    code, out, _ = harness(capsys, "baseline", "show")
    assert code == 0 and out.startswith("20261126T062715Z-twin: twin, passed")
    fixtures.write_run(reports, current(**{"acceptance.routing.accuracy": 0.9}))
    code, out, _ = harness(capsys, "compare", CUR)
    assert code == 1 and f"baseline: {reports / 'baseline.json'}" in out
    assert "routing.accuracy" in out.split("REGRESSION")[-1]

    code, _, err = harness(capsys, "compare", CUR, "--baseline", "last-green")
    assert code == 2 and "no passed run of the same kind against target twin" in err  # none yet
    code, _, _ = harness(capsys, "report", old.name)
    assert code == 0
    code, out, _ = harness(capsys, "compare", CUR, "--baseline", "last-green")
    assert code == 1 and str(old / "record.json") in out


def test_cli_report_writes_the_reports(reports: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = fixtures.write_run(reports, fixtures.record())
    code, out, _ = harness(capsys, "report", str(run_dir), "--history", "5")
    assert code == 0
    assert out.startswith("# Run 20261126T062715Z-twin: PASSED")
    assert f"wrote {run_dir / 'report.html'}" in out
    assert 'id="plot-trend-accuracy"' in (run_dir / "report.html").read_text()
    (run_dir / "record.json").write_text('{"schema_version": 1}')
    code, _, err = harness(capsys, "report", str(run_dir))
    assert code == 2 and "field run_id is missing" in err


def test_a_baseline_given_as_a_run_anywhere_brings_its_per_request_data(tmp_path: Path) -> None:
    """`--baseline /elsewhere/runs/X` (another reports root, a CI artefact): its requests.jsonl
    is read from beside its record, so p95s are judged on the requests, not on summaries."""
    from harness.report.compare import run_dirs_of

    cur, base = {"run_id": "cur"}, {"run_id": "base"}
    here, there = tmp_path / "runs" / "cur", tmp_path / "elsewhere" / "runs" / "base"
    assert run_dirs_of(cur, here, base, there / "record.json") == {"cur": here, "base": there}
    # A pinned baseline.json is a copy: its run is found under the reports root, if kept.
    assert run_dirs_of(cur, here, base, tmp_path / "baseline.json") == {"cur": here}
