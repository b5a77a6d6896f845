"""benchmarks/serve_sla.py: serve_sla's criteria from the harness's limits, its judgement of one
`vllm bench serve` result JSON and its answer; and the turns the two searches of
benchmarks/capacity_vs_serve_sla.py take."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.serve_sla import (  # noqa: E402
    max_passing,
    parse_criterion,
    sla_misses,
    sla_params,
    vllm_goodput_share,
)

TWIN_LOCAL = {"p95_ttft_s": 2.3, "p95_itl_s": 0.12, "p95_e2e_s": 3.6}


def result(**over: float) -> dict[str, float]:
    """The keys of `vllm bench serve --save-result --metric-percentiles 95` that are read."""
    doc = {
        "duration": 10.0, "completed": 18, "failed": 2, "request_goodput": 1.5,
        "p95_ttft_ms": 900.0, "p95_tpot_ms": 40.0, "p95_e2el_ms": 2100.0,
    }  # fmt: skip
    doc.update(over)
    return doc


def test_limits_become_vllm_result_keys_in_ms():
    assert sla_params(TWIN_LOCAL) == {
        "p95_ttft_ms": "<=2300",
        "p95_tpot_ms": "<=120",  # the harness's goodput applies p95_itl_s to TPOT
        "p95_e2el_ms": "<=3600",
    }
    assert sla_params({"p95_ttft_s": 0.5}, percentile=99) == {"p99_ttft_ms": "<=500"}
    with pytest.raises(ValueError, match="max_error_rate"):
        sla_params({"max_error_rate": 0.0})


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("<=2300", ("<=", 2300.0)), ("<0.5", ("<", 0.5)), (">=1", (">=", 1.0)), (">7", (">", 7.0))],
)
def test_criterion_takes_the_longer_operator_first(text, parsed):
    assert parse_criterion(text) == parsed


@pytest.mark.parametrize("text", ["=5", "2300", "<=fast"])
def test_criterion_without_operator_or_number_is_refused(text):
    with pytest.raises(ValueError):
        parse_criterion(text)


def test_result_within_every_limit_misses_nothing():
    assert sla_misses(result(), sla_params(TWIN_LOCAL)) == []


def test_each_missed_limit_is_named_with_its_value():
    misses = sla_misses(result(p95_ttft_ms=2301.0, p95_e2el_ms=5000.0), sla_params(TWIN_LOCAL))
    assert misses == ["p95_ttft_ms = 2301 (not <=2300)", "p95_e2el_ms = 5000 (not <=3600)"]


def test_limit_is_inclusive_only_for_less_or_equal():
    assert sla_misses(result(p95_ttft_ms=2300.0), {"p95_ttft_ms": "<=2300"}) == []
    assert sla_misses(result(p95_ttft_ms=2300.0), {"p95_ttft_ms": "<2300"}) != []


def test_a_run_where_nothing_completed_misses_every_criterion():
    # vLLM reports percentiles of an empty list as 0 ms: that must not pass.
    doc = result(completed=0, failed=20, p95_ttft_ms=0.0)
    assert sla_misses(doc, {"p95_ttft_ms": "<=2300"}) == ["p95_ttft_ms not reported"]
    assert sla_misses(result(), {"p95_itl_ms": "<=50"}) == ["p95_itl_ms not reported"]


def test_vllm_goodput_share_counts_failed_requests_as_sent():
    assert vllm_goodput_share(result()) == pytest.approx(15 / 20)
    assert vllm_goodput_share(result(request_goodput=None)) is None  # type: ignore[arg-type]
    assert vllm_goodput_share(result(completed=0, failed=0)) is None


def test_answer_is_the_highest_rate_that_met_the_criteria():
    trials = [(1.0, True), (2.0, True), (4.0, False), (2.83, True), (3.36, False)]
    assert max_passing(trials) == 2.83
    assert max_passing([(1.0, False), (0.5, False)]) == 0.0


def test_searches_take_turns_and_a_finished_one_leaves():
    from benchmarks.capacity_vs_serve_sla import Alternate

    turns = Alternate(["a", "b"])
    order: list[str] = []

    def side(name: str, probes: int) -> None:
        run = turns.wrap(name, lambda rate: order.append(name))  # type: ignore[arg-type,return-value]
        try:
            for _ in range(probes):
                run(1.0)
        finally:
            turns.leave(name)

    threads = [
        threading.Thread(target=side, args=("b", 1)),
        threading.Thread(target=side, args=("a", 3)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in threads), "a side waited for a turn that never came"
    assert order == ["a", "b", "a", "a"]
