"""`harness sessions` on a recorded session log (tests/unit/data/ai-router-session.jsonl): an
hour of the router with health checks, both routes, three fallback causes, a conversation
classified on its trimmed history, upstream errors, a rejected key and one line cut short."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import report_fixtures as fixtures

from harness.cli import main
from harness.compose import load_stack
from harness.errors import InputError
from harness.report.compare import NOT_COMPARED, OK, REGRESSION, Tolerances, compare
from harness.report.sessions import compose_location, parse_since, read_log, summarize

LOG = Path(__file__).parent / "data" / "ai-router-session.jsonl"


def test_the_figures_of_the_recorded_log() -> None:
    s = summarize(read_log(LOG), max_model_len=32768)
    assert (s.lines, s.bad_lines, s.health_checks, s.requests) == (16, 1, 3, 12)
    assert s.paths == {"POST /v1/chat/completions": 11, "POST /v1/route": 1}
    assert s.routes == {"local": 7, "search": 4}
    assert s.reasons == {
        "classified": 7,
        "classified:trimmed-history": 1,
        "fallback:classifier_5xx": 1,
        "fallback:context_too_long": 1,
        "fallback:timeout": 1,
    }
    # The 401 never reached the classifier: 11 routing decisions, 3 of them fallbacks.
    assert (s.classified, s.fallbacks) == (11, 3)
    assert s.fallback_rate == pytest.approx(3 / 11)
    assert s.fallback_causes == {"classifier_5xx": 1, "context_too_long": 1, "timeout": 1}
    # 12 35 38 39 41 44 47 52 97 611 30004 ms: linear interpolation between order statistics.
    assert s.classifier_ms == {
        "n": 11,
        "p50": 44.0,
        "p95": pytest.approx(15307.5),
        "p99": pytest.approx(27064.7),
        "max": 30004.0,
    }
    # Local answers with usage: 600 1001 2520 17000 31000 31168 tokens.
    assert s.conversation == {
        "counted": 6,
        "max_model_len": 32768,
        "p50": 9760.0,
        "p95": pytest.approx(31126.0),
        "max": 31168,
        "trimmed_history": 1,
        "too_long": 1,
        "at_or_above": {"0.5": 3, "0.9": 2, "1": 0},
    }
    assert s.status == {"2xx": 8, "4xx": 2, "5xx": 2}
    assert s.errors == {
        "authentication_error": 1,
        "invalid_request_error": 1,
        "timeout_error": 1,
        "upstream_error": 1,
    }
    assert (s.first_ts, s.last_ts) == (
        "2026-11-28T21:58:02.104511+00:00",
        "2026-11-28T23:02:11.004412+00:00",
    )


def test_a_window_keeps_the_records_from_its_start() -> None:
    log = read_log(LOG).window(datetime(2026, 11, 28, 22, 30, tzinfo=UTC))
    s = summarize(log)
    assert (len(log.records), s.health_checks, s.requests, s.fallbacks) == (7, 1, 6, 2)
    assert "at_or_above" not in s.conversation  # no max-model-len given


def test_since_durations() -> None:
    assert parse_since("24h") == timedelta(hours=24)
    assert parse_since("30m") == timedelta(minutes=30)
    assert parse_since("7d") == timedelta(days=7)
    with pytest.raises(InputError, match="--since '1 day'"):
        parse_since("1 day")


def test_the_command_reads_a_run_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "logs").mkdir()
    shutil.copy(LOG, tmp_path / "logs" / "ai-router-session.jsonl")
    assert main(["sessions", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["fallback_rate"] == round(3 / 11, 6)
    assert doc["conversation"]["max_model_len"] == 32768  # the compose file's primary
    assert main(["sessions", str(LOG)]) == 0
    text = capsys.readouterr().out
    assert "fallbacks: 3 of 11 routing decisions (27.27%)" in text
    assert "classifier latency: p50 44 ms, p95 15,308 ms" in text
    assert "16 line(s), 1 unreadable" in text


def test_a_folder_without_a_log_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sessions", str(tmp_path)]) == 2
    assert str(tmp_path) in capsys.readouterr().err


def test_the_live_stack_keeps_its_log_on_the_router_logs_volume(real_compose: Path) -> None:
    assert compose_location(load_stack(real_compose)) == (
        "router-logs",
        "session.jsonl",
        "ai-router",
    )


def test_compare_gates_on_the_fallback_rate() -> None:
    def with_rate(rate: float | None) -> dict:
        doc = fixtures.record()
        if rate is not None:
            doc["telemetry"] = {"sessions": {"fallback_rate": rate}}
        return doc

    def verdict(base: float | None, cur: float | None) -> str:
        rows = compare(with_rate(cur), with_rate(base), Tolerances()).rows
        return next(r.verdict for r in rows if r.metric == "sessions.fallback_rate")

    assert verdict(0.01, 0.03) == OK  # two points is the default tolerance
    assert verdict(0.01, 0.05) == REGRESSION
    assert verdict(None, 0.05) == NOT_COMPARED
    plain = compare(with_rate(None), with_rate(None), Tolerances()).rows
    assert not any(r.metric == "sessions.fallback_rate" for r in plain)


def test_the_nightly_record_and_report_carry_the_summary(
    tmp_path: Path, real_compose: Path
) -> None:
    from harness.cli.sessions import add_sessions
    from harness.report.finalize import finalize_run

    run_dir = tmp_path / "runs" / "20261129T010000Z-twin"
    (run_dir / "logs").mkdir(parents=True)
    shutil.copy(LOG, run_dir / "logs" / "ai-router-session.jsonl")
    (run_dir / "record.json").write_text(json.dumps(fixtures.record("20261129T010000Z-twin")))
    text = add_sessions(run_dir, "twin", real_compose, None)
    assert "fallbacks: 3 of 11 routing decisions (27.27%)" in text
    doc = json.loads((run_dir / "record.json").read_text())
    assert doc["telemetry"]["sessions"]["fallback_rate"] == round(3 / 11, 6)
    finalize_run(run_dir, history=tmp_path / "history.jsonl", trend_runs=0)
    report = (run_dir / "report.md").read_text()
    assert "## Sessions" in report
    assert "- Fallbacks 3 of 11 (27.3 %): classifier_5xx 1, context_too_long 1, timeout 1" in report
