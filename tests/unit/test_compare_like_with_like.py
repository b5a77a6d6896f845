"""harness compare judges like with like: a load profile that ran with other settings than the
baseline's is "not comparable" with the difference named, never a regression, and the command
refuses such a baseline (exit 2) unless --force; last-green is the newest green run of the same
kind; and the text table gives the reason on every row whose value is past its limit yet ok."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import report_fixtures as fixtures

from harness.cli.exit_codes import BAD_INPUT
from harness.report.comparable import NotComparableError, refuse_unlike
from harness.report.compare import NOT_COMPARABLE, OK, REGRESSION, Row, compare
from harness.report.compare_render import render_table

CUR = "20261127T062715Z-twin-load"


def current(**changes: Any) -> dict[str, Any]:
    doc = fixtures.record(CUR, started_at="2026-11-27T06:27:15Z")
    for dotted, value in changes.items():
        doc = fixtures.set_in(doc, dotted.replace("__", "."), value)
    return doc


def steady_rows(c: Any) -> list[Row]:
    return [r for r in c.rows if r.metric.startswith("load.steady.")]


def slower_60s_run() -> dict[str, Any]:
    """A `harness load steady` run: 60 s instead of the baseline's 20 s, and slower."""
    base = fixtures.record()
    p95 = base["load"]["steady"]["latency"]["local"]["ttft_s"]["p95"]
    return current(
        **{
            "load.steady.settings.duration_s": 60,
            "load.steady.latency.local.ttft_s.p95": p95 * 2,
        }
    )


def test_a_profile_at_another_duration_is_not_comparable_not_a_regression() -> None:
    c = compare(slower_60s_run(), fixtures.record())
    assert not c.regression
    rows = steady_rows(c)
    assert rows and {r.verdict for r in rows} == {NOT_COMPARABLE}
    assert {r.note for r in rows} == {"duration 20 s vs 60 s"}
    # The other profiles ran alike and are judged as before.
    assert {r.verdict for r in c.rows if r.metric.startswith("load.ramp.")} == {OK}
    text = render_table(c)
    assert "not comparable (duration 20 s vs 60 s)" in text
    assert "NOT COMPARABLE" in text.splitlines()[-1] and "load.steady" in text.splitlines()[-1]


def test_force_compares_them_anyway() -> None:
    c = compare(slower_60s_run(), fixtures.record(), force=True)
    row = next(r for r in c.rows if r.metric == "load.steady.local.ttft_p95_s")
    assert row.verdict == REGRESSION and "forced: duration 20 s vs 60 s" in row.note


def test_users_and_target_differences_are_named() -> None:
    cur = current(**{"load.steady.settings.users": 5, "load.steady.target": "attach"})
    base = fixtures.set_in(fixtures.record(), "load.steady.settings.users", 3)
    notes = {r.note for r in steady_rows(compare(cur, base))}
    assert notes == {"target twin vs attach, users 3 vs 5"}


def test_a_setting_an_older_record_lacks_is_not_held_against_it() -> None:
    cur = current(**{"load.steady.settings.processes": 2})
    assert {r.verdict for r in steady_rows(compare(cur, fixtures.record()))} == {OK}


def test_a_value_past_its_limit_judged_ok_shows_why_on_its_row() -> None:
    why = "bootstrap: p95 grew by at least +20 ms (95%), allowed +98 ms; n=40/40 requests"
    past = Row("load.steady.local.ttft_p95_s", 0.65, 0.86, 0.75, "max", OK, why)
    plain = Row("routing.accuracy", 0.95, 0.96, 0.93, "min", OK, "may drop 2 points")
    from harness.report.compare import Comparison

    text = render_table(Comparison(CUR, "base", (past, plain)))
    line = next(ln for ln in text.splitlines() if ln.startswith("load.steady.local"))
    assert line.rstrip().endswith("ok (within noise: bootstrap: p95 grew by at least +20 ms "
                                  "(95%), allowed +98 ms; n=40/40 requests)")  # fmt: skip
    acc = next(ln for ln in text.splitlines() if ln.startswith("routing.accuracy"))
    assert acc.rstrip().endswith("ok")


def test_every_ok_row_past_its_limit_carries_a_reason() -> None:
    bare = Row("load.steady.error_rate", 0.0, 0.5, 0.1, "max", OK)
    from harness.report.compare import Comparison

    line = render_table(Comparison(CUR, "base", (bare,))).splitlines()[2]
    assert "ok (" in line


# `harness compare` on the command line: an unlike baseline is refused (exit 2, the differing
# settings named) unless --force; --baseline last-green picks the newest green run of the
# same kind.


def make_run(run_id: str, started_at: str) -> dict[str, Any]:
    """A `make run` record: acceptance, then steady (20 s) and kv-pressure."""
    doc = fixtures.record(run_id, started_at=started_at)
    return {**doc, "load": {k: v for k, v in doc["load"].items() if k in ("steady", "kv-pressure")}}


def load_run(run_id: str, started_at: str, duration_s: int = 60) -> dict[str, Any]:
    """A `harness load steady` record: steady alone, 60 s, no acceptance."""
    doc = fixtures.record(run_id, started_at=started_at)
    steady = fixtures.set_in(doc, "load.steady.settings.duration_s", duration_s)["load"]["steady"]
    return {**doc, "load": {"steady": steady}, "acceptance": {}}


@pytest.fixture
def reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_REPORTS_DIR", str(tmp_path))
    monkeypatch.setenv("HARNESS_CONFIG", str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text("")
    return tmp_path


def harness(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from harness.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_compare_refuses_a_make_run_baseline_for_a_harness_load_run(
    reports: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = fixtures.write_run(reports, make_run("20261126T062715Z-twin", "2026-11-26T06:27:15Z"))
    cur = fixtures.write_run(reports, load_run(CUR, "2026-11-27T06:27:15Z"))
    code, out, err = harness(capsys, "compare", str(cur), "--baseline", str(base))
    assert code == BAD_INPUT, out + err
    assert "not comparable" in err and "steady: duration 20 s vs 60 s" in err
    assert "--force" in err and "REGRESSION" not in out
    code, out, _ = harness(capsys, "compare", str(cur), "--baseline", str(base), "--force")
    assert code in (0, 1) and "forced: duration 20 s vs 60 s" in out
    code, out, _ = harness(capsys, "compare", str(cur), "--baseline", str(base), "--json")
    assert code == BAD_INPUT and out == ""


def test_refusal_names_every_difference() -> None:
    base = fixtures.record()
    cur = current(**{"load.steady.settings.users": 5, "load.ramp.settings.duration_s": 90})
    with pytest.raises(NotComparableError) as exc:
        refuse_unlike(cur, base)
    assert "ramp: duration 20 s vs 90 s" in str(exc.value)
    assert "steady: users None vs 5" in str(exc.value)
    refuse_unlike(cur, base, force=True)
    refuse_unlike(current(), base)  # alike: no refusal


def test_last_green_is_the_newest_green_run_of_the_same_kind(
    reports: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    older_load = fixtures.write_run(reports, load_run("20261125T000000Z-twin", "2026-11-25T00:00Z"))
    short_load = load_run("20261125T120000Z-twin", "2026-11-25T12:00Z", duration_s=30)
    fixtures.write_run(reports, short_load)
    make = fixtures.write_run(reports, make_run("20261126T000000Z-twin", "2026-11-26T00:00Z"))
    red_load = {**load_run("20261126T120000Z-twin", "2026-11-26T12:00Z"), "status": "failed"}
    fixtures.write_run(reports, red_load)
    for run in sorted((reports / "runs").iterdir()):
        assert harness(capsys, "report", str(run))[0] == 0
    cur = fixtures.write_run(reports, load_run(CUR, "2026-11-27T06:27:15Z"))
    code, out, err = harness(capsys, "compare", str(cur), "--baseline", "last-green")
    assert code == 0, out + err
    assert f"baseline: {older_load / 'record.json'}" in out

    # A make run's last green is the make run, never a load run.
    again = fixtures.write_run(reports, make_run(CUR + "-make", "2026-11-27T07:00Z"))
    code, out, _ = harness(capsys, "compare", str(again), "--baseline", "last-green")
    assert code == 0 and f"baseline: {make / 'record.json'}" in out


def test_last_green_says_when_no_green_run_is_of_the_same_kind(
    reports: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make = fixtures.write_run(reports, make_run("20261126T000000Z-twin", "2026-11-26T00:00Z"))
    assert harness(capsys, "report", str(make))[0] == 0
    cur = fixtures.write_run(reports, load_run(CUR, "2026-11-27T06:27:15Z"))
    code, _, err = harness(capsys, "compare", str(cur), "--baseline", "last-green")
    assert code == BAD_INPUT
    assert "no passed run of the same kind" in err and "20261126T000000Z-twin (" in err


def test_the_text_table_prints_numbers_for_people() -> None:
    from harness.report.compare import Comparison

    rows = (
        Row("load.steady.local.ttft_p95_s", 0.6508, 0.8596, 0.7485, "max", REGRESSION),
        Row("load.steady.error_rate", 0.0, 0.0000506, 0.0, "max", REGRESSION),
        Row("kv_capacity.vllm-primary.tokens", 331568.0, 315100.0, 315000.0, "min", OK),
        Row("load.steady.local.itl_p95_s", 0.0004154, 0.00041, None, "", "not compared"),
    )
    text = render_table(Comparison(CUR, "base", rows))
    assert not any(e in text for e in ("e+0", "e-0")), text
    line = next(ln for ln in text.splitlines() if ln.startswith("load.steady.local.ttft"))
    assert line.split()[1:5] == ["651", "ms", "860", "ms"] and "+209 ms" in line
    assert "<= 748 ms" in line  # 0.7485 s is 748.49... ms in binary floating point
    err = next(ln for ln in text.splitlines() if ln.startswith("load.steady.error_rate"))
    assert "0.00506 %" in err
    kv = next(ln for ln in text.splitlines() if ln.startswith("kv_capacity"))
    assert "331,568" in kv and "315,100" in kv and "-16,468" in kv and ">= 315,000" in kv
    itl = next(ln for ln in text.splitlines() if ln.startswith("load.steady.local.itl"))
    assert "0.415 ms" in itl
