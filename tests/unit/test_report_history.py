"""history.jsonl (one line per run, idempotent), run lookup, baseline pinning and last-green."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import report_fixtures as fixtures

from harness.errors import InputError
from harness.report.finalize import finalize_run
from harness.report.history import (
    append_history,
    last_green,
    read_history,
    recent,
    resolve_baseline,
    resolve_run,
    set_baseline,
)
from harness.report.summary import history_line


def run(root: Path, day: int, status: str = "passed", target: str = "twin") -> Path:
    doc = fixtures.record(
        f"202611{day:02d}T062715Z-{target}",
        status=status,
        target=target,
        started_at=f"2026-11-{day:02d}T06:27:15Z",
    )
    return fixtures.write_run(root, doc, timelines=False)


def test_history_line_has_the_summary_numbers() -> None:
    doc = fixtures.record()
    doc["acceptance"]["long_context"][0]["reason"] = "fallback:timeout"
    doc["load"]["steady"]["engines"]["vllm-primary"]["preemptions"] = 2.0
    line = history_line(doc, "reports/runs/x")
    assert line["run_id"] == doc["run_id"] and line["status"] == "passed"
    assert line["target"] == "twin" and line["started_at"] == doc["started_at"]
    assert line["routing_accuracy"] == 0.9667
    assert line["fallbacks"] == {"routing": 0, "long_context": 1, "long_context_silent": 0}
    assert line["long_context_failures"] == 1
    steady = line["load"]["steady"]
    assert steady["p95_ttft_s"] == {"local": pytest.approx(3.06), "search": pytest.approx(1.404)}
    assert steady["error_rate"] == 0.0 and steady["preemptions"]["vllm-primary"] == 2.0
    json.dumps(line)  # one JSON line


def test_finalize_appends_once_per_run(tmp_path: Path) -> None:
    run_dir = run(tmp_path, 26)
    finalize_run(run_dir)
    finalize_run(run_dir)
    history = tmp_path / "history.jsonl"
    assert len(history.read_text().splitlines()) == 1
    # Finalized again after the record changed: the line is replaced, not added.
    doc = json.loads((run_dir / "record.json").read_text())
    doc["status"] = "failed"
    (run_dir / "record.json").write_text(json.dumps(doc))
    finalize_run(run_dir)
    entries = read_history(history)
    assert [e["status"] for e in entries] == ["failed"]


def test_append_keeps_other_runs_in_order(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    for i in range(3):
        assert append_history(path, {"run_id": f"r{i}", "status": "passed"})
    assert not append_history(path, {"run_id": "r1", "status": "passed"})
    assert append_history(path, {"run_id": "r1", "status": "failed"})
    assert [(e["run_id"], e["status"]) for e in read_history(path)] == [
        ("r0", "passed"),
        ("r1", "failed"),
        ("r2", "passed"),
    ]


def test_a_corrupt_history_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text('{"run_id": "a"}\n{not json\n')
    with pytest.raises(InputError, match=rf"{path}:2: not JSON"):
        read_history(path)


def test_recent_is_by_start_time_and_target() -> None:
    entries = [
        {"run_id": "b", "started_at": "2026-11-02", "target": "twin"},
        {"run_id": "a", "started_at": "2026-11-01", "target": "twin"},
        {"run_id": "g", "started_at": "2026-11-03", "target": "gpu"},
    ]
    assert [e["run_id"] for e in recent(entries, 5, "twin")] == ["a", "b"]
    assert [e["run_id"] for e in recent(entries, 2)] == ["b", "g"]
    assert recent(entries, 0) == []


def test_resolve_run_by_dir_record_or_id(tmp_path: Path) -> None:
    run_dir = run(tmp_path, 26)
    assert resolve_run(run_dir, tmp_path) == run_dir
    assert resolve_run(run_dir / "record.json", tmp_path) == run_dir
    assert resolve_run(run_dir.name, tmp_path) == tmp_path / "runs" / run_dir.name
    with pytest.raises(InputError, match="no run there"):
        resolve_run("20991231T000000Z-twin", tmp_path)


def test_baseline_set_copies_the_validated_record(tmp_path: Path) -> None:
    run_dir = run(tmp_path, 26)
    path = set_baseline(run_dir, tmp_path)
    assert path == tmp_path / "baseline.json"
    assert json.loads(path.read_text()) == json.loads((run_dir / "record.json").read_text())
    assert resolve_baseline(None, tmp_path, "anything") == path
    broken = run(tmp_path, 27)
    (broken / "record.json").write_text("{")
    with pytest.raises(InputError, match="not JSON"):
        set_baseline(broken, tmp_path)
    assert json.loads(path.read_text())["run_id"] == run_dir.name  # left as it was


def test_last_green_is_the_newest_passed_run_but_this_one(tmp_path: Path) -> None:
    for day, status, target in (
        (20, "passed", "twin"),
        (21, "passed", "twin"),
        (22, "failed", "twin"),
        (23, "passed", "gpu"),
        (24, "passed", "twin"),
    ):
        finalize_run(run(tmp_path, day, status, target), trend_runs=0)
    assert last_green(tmp_path, "20261124T062715Z-twin", "twin").parent.name == (
        "20261121T062715Z-twin"
    )
    assert last_green(tmp_path, "20261125T062715Z-twin", "twin").parent.name == (
        "20261124T062715Z-twin"
    )
    assert last_green(tmp_path, "x").parent.name == "20261124T062715Z-twin"
    picked = resolve_baseline("last-green", tmp_path, "20261124T062715Z-twin", "twin")
    assert picked.parent.name == "20261121T062715Z-twin"
    with pytest.raises(InputError, match="no passed run against target gpu other than"):
        last_green(tmp_path, "20261123T062715Z-gpu", "gpu")


def test_no_baseline_at_all_says_how_to_pin_one(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="harness baseline set RUN"):
        resolve_baseline(None, tmp_path, "r")
    with pytest.raises(InputError, match=r"--baseline nope\.json: no such file"):
        resolve_baseline("nope.json", tmp_path, "r")


def test_last_green_whose_record_is_gone_is_named(tmp_path: Path) -> None:
    gone = run(tmp_path, 20)
    finalize_run(gone, trend_runs=0)
    (gone / "record.json").unlink()
    with pytest.raises(InputError, match="last-green run 20261120T062715Z-twin has no record"):
        last_green(tmp_path, "other")


def test_writers_take_turns_on_the_history(tmp_path: Path) -> None:
    import threading

    from harness.locks import locked
    from harness.report.history import append_history

    path = tmp_path / "history.jsonl"
    done = threading.Event()
    with locked(path.with_name(path.name + ".lock")):
        t = threading.Thread(
            target=lambda: (append_history(path, {"run_id": "a", "ok": True}), done.set())
        )
        t.start()
        assert not done.wait(0.3), "a writer went ahead while another held the history"
    t.join(5)
    assert done.is_set() and path.read_text().count('"run_id": "a"') == 1
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []
