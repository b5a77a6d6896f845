"""harness compare judges like with like: a load profile that ran with other settings than the
baseline's is "not comparable" with the difference named, never a regression (unless --force);
and the text table gives the reason on every row whose value is past its limit yet ok."""

from __future__ import annotations

from typing import Any

import report_fixtures as fixtures

from harness.report.compare import (
    NOT_COMPARABLE,
    OK,
    REGRESSION,
    Row,
    compare,
    render_table,
)

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
