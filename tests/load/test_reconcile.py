"""The load client against the primary's own counters over the same window.

- Two locust worker processes: their merged records account for every request the primary
  completed (vllm:request_success_total), every prompt and output token
  (vllm:prompt_tokens_total, vllm:generation_tokens_total), and the client's TTFT sits within
  harness.load.reconcile.TtftBounds of the primary's TTFT histogram. One worker's records alone
  do not reconcile, which shows the check sees a lost worker file.
- A client whose clock starts late fails the same reconciliation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.load.reconcile import reconcile
from harness.load.runner import run_profile

# Short prompts: whatever pool the primary has (kv-pressure may leave a small one) holds them.
pytestmark = [pytest.mark.load, pytest.mark.slow, pytest.mark.any_primary_pool]

ROOT = Path(__file__).resolve().parents[2]
LATE_CLOCK = ROOT / "tests" / "load" / "locustfile_late_clock.py"


def duration(settings: Any) -> float:
    return settings.typed.load.test_duration_s["steady"]


def show(name: str, rec: dict[str, Any]) -> None:
    keys = (
        "client_requests", "engine_requests", "client_prompt_tokens", "engine_prompt_tokens",
        "client_output_tokens", "engine_output_tokens", "client_ttft_mean_ms",
        "engine_ttft_mean_ms", "ttft_mean_diff_ms", "problems",
    )  # fmt: skip
    print(f"\n{name}: " + ", ".join(f"{k} {rec.get(k)}" for k in keys))


def test_two_processes_reconcile_with_the_engine(stack: Any, harness_settings: Any) -> None:
    result = run_profile(
        stack,
        "steady",
        stack.run_dir / "load-reconcile" / "two-processes",
        duration_s=duration(harness_settings),
        max_tokens=harness_settings.typed.load.max_tokens,
        processes=2,
    )
    s = result.summary
    rec = s["reconciliation"][stack.primary.name]
    show("two processes", rec)
    workers = {r.worker for r in result.records}
    assert workers == {"1", "2"}, f"records came from workers {workers}, not from both"
    assert s["failed"] == 0, s["errors"]
    assert rec["client_requests"] > 0, "no request reached the primary (route local)"
    assert rec["tokens_compared"], rec
    assert not rec["problems"], "; ".join(rec["problems"])

    # The same window against one worker's records: the check sees what a lost file loses.
    one = [r for r in result.records if r.worker == "1" and r.route == "local"]
    alone = reconcile(one, *result.windows[stack.primary.name])
    assert any("the engine completed" in p for p in alone["problems"]), alone


def test_a_late_client_clock_fails_reconciliation(
    stack: Any, harness_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARNESS_TEST_LATE_START_S", "0.1")
    result = run_profile(
        stack,
        "steady",
        stack.run_dir / "load-reconcile" / "late-clock",
        duration_s=duration(harness_settings),
        max_tokens=harness_settings.typed.load.max_tokens,
        locustfile_path=LATE_CLOCK,
    )
    rec = result.summary["reconciliation"][stack.primary.name]
    show("late clock", rec)
    assert rec["client_requests"] > 0 and rec["client_requests"] == rec["engine_requests"], rec
    assert any("starts late" in p for p in rec["problems"]), rec["problems"]
