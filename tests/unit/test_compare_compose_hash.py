"""harness compare holds the compose file to like with like: runs brought up from other compose
files are refused (exit 2, both hashes named) unless --force, and a forced compare says so on
every row; an older record without a hash is compared, the output saying the compose files
could not be; `harness tune`, whose change is a compose change, compares across it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import report_fixtures as fixtures

from harness.cli.exit_codes import BAD_INPUT
from harness.config import Settings
from harness.report.comparable import NotComparableError, kind_difference, refuse_unlike
from harness.report.compare import (
    CHANGED,
    COMPOSE_METRIC,
    NOT_COMPARABLE,
    NOT_COMPARED,
    OK,
    compare,
)
from harness.report.compare_render import render_table
from harness.tune import Verification, judge

BASE_HASH = "1a2b3c4d5e6f" + "0" * 52
OTHER_HASH = "3c4d5e6f7a8b" + "f" * 52
CUR = "20261127T062715Z-twin"


def run(run_id: str, digest: str | None, started_at: str = "2026-11-26T06:27:15Z") -> Any:
    doc = fixtures.record(run_id, started_at=started_at)
    if digest is None:
        doc["preflight"].pop("compose_sha256")
    else:
        doc["preflight"]["compose_sha256"] = digest
        doc["stack"]["compose_sha256"] = digest
    return doc


def base(digest: str | None = BASE_HASH) -> dict[str, Any]:
    return run("20261126T062715Z-twin", digest)


def current(digest: str | None = OTHER_HASH) -> dict[str, Any]:
    return run(CUR, digest, "2026-11-27T06:27:15Z")


def compose_row(c: Any) -> Any:
    return next(r for r in c.rows if r.metric == COMPOSE_METRIC)


def test_other_compose_files_are_refused_with_both_hashes_named() -> None:
    with pytest.raises(NotComparableError) as exc:
        refuse_unlike(current(), base())
    assert "compose hash 1a2b3c4d5e6f… vs 3c4d5e6f7a8b…" in str(exc.value)
    refuse_unlike(current(), base(), force=True)
    refuse_unlike(current(BASE_HASH), base())  # the same file: no refusal


def test_the_stack_hash_is_the_file_the_run_was_brought_up_from() -> None:
    cur = current(BASE_HASH)
    cur["stack"]["compose_sha256"] = OTHER_HASH  # preflight read one file, the stack ran another
    with pytest.raises(NotComparableError, match="1a2b3c4d5e6f… vs 3c4d5e6f7a8b…"):
        refuse_unlike(cur, base())


def test_unforced_every_metric_is_not_comparable() -> None:
    c = compare(current(), base())
    measured = [r for r in c.rows if not r.metric.startswith("stack.")]
    assert measured and {r.verdict for r in measured} == {NOT_COMPARABLE}
    assert not c.regression
    assert compose_row(c).verdict == CHANGED
    last = render_table(c).splitlines()[-1]
    assert "NOT COMPARABLE, another compose file" in last and "1a2b3c4d5e6f… vs" in last


def test_forced_each_row_says_so() -> None:
    c = compare(current(), base(), force=True)
    measured = [r for r in c.rows if not r.metric.startswith("stack.")]
    assert measured and all(
        "forced: compose hash 1a2b3c4d5e6f… vs 3c4d5e6f7a8b…" in r.note for r in measured
    )
    assert NOT_COMPARABLE not in {r.verdict for r in c.rows}
    body = render_table(c).splitlines()[2:-1]
    ok_rows = [ln for ln in body if " ok" in ln and not ln.startswith("stack.")]
    assert ok_rows and all("forced: compose hash" in ln for ln in ok_rows)
    # The table shows the hash as people read it; --json keeps it whole.
    assert any(ln.startswith(COMPOSE_METRIC) and "3c4d5e6f7a8b…" in ln for ln in body)
    assert compose_row(c).to_dict()["current"] == OTHER_HASH


def test_a_forced_compose_joins_the_profile_difference_on_one_row() -> None:
    cur = fixtures.set_in(current(), "load.steady.settings.duration_s", 60)
    row = next(
        r for r in compare(cur, base(), force=True).rows if r.metric == "load.steady.error_rate"
    )
    assert row.note.count("forced: ") == 1
    assert "duration 20 s vs 60 s" in row.note and "compose hash" in row.note


@pytest.mark.parametrize(
    ("b", "c", "whose"),
    [(None, OTHER_HASH, "baseline's"), (BASE_HASH, None, "current run's")],
)
def test_an_older_record_without_a_hash_is_compared_and_says_the_hash_was_not(
    b: str | None, c: str | None, whose: str
) -> None:
    cur, old = current(c), base(b)
    if c is None:
        cur.pop("stack")
    refuse_unlike(cur, old)
    result = compare(cur, old)
    assert {r.verdict for r in result.rows if r.metric.startswith("load.")} == {OK}
    row = compose_row(result)
    assert row.verdict == NOT_COMPARED and whose in row.note
    line = next(ln for ln in render_table(result).splitlines() if ln.startswith(COMPOSE_METRIC))
    assert "compose files not compared" in line


def test_last_green_is_only_a_run_of_the_same_compose_file() -> None:
    assert kind_difference(base(), current()) == ["compose hash 1a2b3c4d5e6f… vs 3c4d5e6f7a8b…"]
    assert kind_difference(base(), current(BASE_HASH)) == []
    assert kind_difference(base(None), current()) == []


def harness(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from harness.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_harness_compare_refuses_then_forces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HARNESS_REPORTS_DIR", str(tmp_path))
    monkeypatch.setenv("HARNESS_CONFIG", str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text("")
    old = fixtures.write_run(tmp_path, base())
    cur = fixtures.write_run(tmp_path, current())
    code, out, err = harness(capsys, "compare", str(cur), "--baseline", str(old))
    assert code == BAD_INPUT, out + err
    assert "compose hash 1a2b3c4d5e6f… vs 3c4d5e6f7a8b…" in err and "--force" in err
    code, out, _ = harness(capsys, "compare", str(cur), "--baseline", str(old), "--force")
    assert code == 0, out
    assert "forced: compose hash" in out


def test_tune_compares_across_its_own_compose_change(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / CUR
    run_dir.mkdir(parents=True)
    after = current()
    after["telemetry"] = {"sessions": {"fallback_rate": 0.2}}
    (run_dir / "record.json").write_text(json.dumps(after))
    before = base()
    before["telemetry"] = {"sessions": {"fallback_rate": 0.0}}
    (tmp_path / "base.json").write_text(json.dumps(before))
    settings = Settings(path=None, environ={})
    verdict = judge(Verification(0, run_dir), str(tmp_path / "base.json"), settings)
    text = "\n".join(verdict.lines)
    # Judged, not waved off as not comparable: the regression rolls the change back.
    assert not verdict.keep and "REGRESSION" in text and "sessions.fallback_rate" in text
    assert "NOT COMPARABLE" not in text
    assert f"{COMPOSE_METRIC}" in text and "changed" in text
