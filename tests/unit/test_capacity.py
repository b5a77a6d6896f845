"""`harness capacity` without engines: the bracketing search against a simulated stack (a
function rate -> probe result), its probe budget, its early stop on over-saturation, the
interval from repeated probes, the limiting resource from recorded /metrics series, the
over-saturation signals, the open-loop schedule, the report, and bad input refused before
anything starts."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import InputError
from harness.load.arrivals import LEAD_S, PoissonSchedule, pool_size
from harness.load.capacity import ProbeResult, SearchPlan, knee, search
from harness.load.probe import ProbeConfig, fill_s, request_cut_for, ttft_rise_for
from harness.load.records import RequestRecord
from harness.load.saturation import (
    CLASSIFIER,
    COMPUTE,
    NOT_REACHED,
    PRIMARY_KV,
    PRIMARY_SLOTS,
    limiting_resource,
    over_saturation,
)
from harness.load.slo_table import SloTable
from harness.report import capacity as report
from harness.report.schema import validate_record

SHARE = 0.95


def stack(
    capacity: float,
    *,
    oversat_from: float | None = None,
    noise: Callable[[float], float] | None = None,
) -> tuple[Callable[[float], ProbeResult], list[float]]:
    """A simulated stack: goodput 1.0 up to `capacity` req/s, falling beyond it (it crosses 95 %
    at 1.1 x `capacity`: knee_of); over-saturated from `oversat_from` req/s. Returns the probe
    function and the rates it was asked for."""
    asked: list[float] = []

    def probe(rate: float) -> ProbeResult:
        asked.append(rate)
        c = capacity + (noise(rate) if noise else 0.0)
        share = 1.0 if rate <= c else max(0.0, 1.0 - 0.5 * (rate - c) / c)
        over = None if oversat_from is None or rate < oversat_from else "queue grew"
        return ProbeResult(
            rate_rps=rate, goodput_share=share, valid=True, requests=int(rate * 20),
            ttft_p95_s=0.5 if rate <= c else 0.5 + rate - c, output_tokens_per_request=40.0,
            over_saturated=over, resource=(PRIMARY_SLOTS, "slots full"),
        )  # fmt: skip

    return probe, asked


def knee_of(capacity: float) -> float:
    """Where the simulated stack's goodput crosses SHARE."""
    return capacity * (1 + 2 * (1 - SHARE))


def test_the_search_brackets_the_capacity_within_its_budget() -> None:
    probe, asked = stack(5.0)
    result = search(probe, SearchPlan(start_rps=1.0, max_probes=8, repeats=2))
    k = result.knee
    assert len(asked) <= 8
    assert asked[:4] == [1.0, 2.0, 4.0, 8.0]  # geometric growth until a probe fails
    assert k.lower_rps <= knee_of(5.0) <= (k.upper_rps or 0)
    assert k.lower_rps <= k.capacity_rps <= (k.upper_rps or 0)
    assert k.capacity_rps == pytest.approx(knee_of(5.0), rel=0.05)
    assert k.capacity_tok_s == pytest.approx(k.capacity_rps * 40.0)
    assert k.resource == PRIMARY_SLOTS
    # the repeats are the two rates nearest the knee: the first failure at once, the highest
    # rate that held at the end
    phases = [phase for phase, _ in result.probes]
    assert phases[4] == "repeat" and asked[4] == 8.0
    assert phases[-1] == "repeat" and asked[-1] == k.lower_rps
    assert phases.count("repeat") == 2


def test_a_first_failure_that_holds_on_its_repeat_lets_the_search_grow_on() -> None:
    probe, asked = stack(10.0)
    transient = {"left": 1}

    def flaky(rate: float) -> ProbeResult:
        r = probe(rate)
        if rate == 2.0 and transient["left"]:
            transient["left"] -= 1  # one slow burst from another process on the machine
            return ProbeResult(rate, 0.8, True, 40, resource=(COMPUTE, "busy"))
        return r

    result = search(flaky, SearchPlan(start_rps=1.0, max_probes=8, repeats=2))
    assert asked[:5] == [1.0, 2.0, 2.0, 4.0, 8.0]
    assert result.knee.lower_rps >= 8.0


@pytest.mark.parametrize("most", [1, 2, 3, 4, 5, 8, 12])
def test_the_search_never_runs_more_than_max_probes(most: int) -> None:
    probe, asked = stack(3.3)
    search(probe, SearchPlan(start_rps=0.5, max_probes=most, repeats=2))
    assert 1 <= len(asked) <= most


def test_a_first_probe_that_fails_shrinks_the_rate_until_one_holds() -> None:
    probe, asked = stack(0.3)
    result = search(probe, SearchPlan(start_rps=2.0, max_probes=8, repeats=0))
    assert asked[:4] == [2.0, 1.0, 0.5, 0.25]
    assert [phase for phase, _ in result.probes][:3] == ["grow", "shrink", "shrink"]
    assert result.knee.lower_rps <= knee_of(0.3) <= (result.knee.upper_rps or 0)


def test_over_saturation_stops_the_growth_whatever_the_goodput() -> None:
    # Goodput holds everywhere, but from 3 req/s the queue grows through each probe.
    probe, asked = stack(100.0, oversat_from=3.0)
    result = search(probe, SearchPlan(start_rps=1.0, max_probes=8, repeats=0))
    assert max(asked) == 4.0  # never above the first over-saturated probe
    assert "growth stopped at 4 req/s, over-saturated" in result.stopped
    assert result.knee.upper_rps is not None and result.knee.upper_rps <= 4.0
    assert result.knee.lower_rps >= 2.0
    # the goodput held at the failing rate: the knee is the highest rate that held
    assert result.knee.capacity_rps == result.knee.lower_rps


def test_every_probe_holding_reports_a_lower_bound_and_no_resource() -> None:
    probe, asked = stack(1000.0)
    result = search(probe, SearchPlan(start_rps=1.0, max_probes=4, repeats=0))
    assert asked == [1.0, 2.0, 4.0, 8.0]
    assert result.knee.upper_rps is None and result.knee.lower_rps == 8.0
    assert result.knee.resource == NOT_REACHED
    assert "every probe held" in result.knee.resource_why


def probe_at(rate: float, good: float, *, oversat: str | None = None) -> ProbeResult:
    return ProbeResult(rate, good, True, 50, 0.5, 0.0, oversat, output_tokens_per_request=10.0)


def test_the_interval_spans_rates_whose_repeats_disagree() -> None:
    trials = [
        probe_at(2.0, 1.0),
        probe_at(4.0, 0.97),
        probe_at(4.0, 0.90),  # the repeat at 4 failed: 4 is no longer sure to hold
        probe_at(5.0, 0.80),
        probe_at(5.0, 0.85),
    ]
    k = knee(trials, SHARE)
    assert (k.lower_rps, k.upper_rps) == (2.0, 5.0)
    assert 2.0 <= k.capacity_rps <= 5.0
    # goodput crosses 95 % between 2 (100 %) and 4 (mean 93.5 %): interpolated
    assert k.capacity_rps == pytest.approx(2.0 + 2.0 * (1.0 - 0.95) / (1.0 - 0.935))
    assert k.lower_tok_s == 20.0 and k.upper_tok_s == 50.0


def test_a_queue_at_a_named_limit_in_any_failing_trial_names_the_resource() -> None:
    def trial(rate: float, good: float, resource: str) -> ProbeResult:
        return ProbeResult(rate, good, True, 40, resource=(resource, resource))

    trials = [
        trial(1.0, 1.0, COMPUTE),
        trial(2.0, 0.9, COMPUTE),
        trial(2.0, 0.6, PRIMARY_SLOTS),  # the repeat queued at the primary's slots
    ]
    assert knee(trials, SHARE).resource == PRIMARY_SLOTS
    assert knee(trials[:2], SHARE).resource == COMPUTE


def test_a_rate_that_failed_once_and_held_once_leaves_the_interval_open() -> None:
    def trial(rate: float, good: float) -> ProbeResult:
        return ProbeResult(rate, good, True, 40, resource=(PRIMARY_SLOTS, "slots full"))

    k = knee([trial(0.5, 1.0), trial(0.9, 1.0), trial(1.0, 0.8), trial(1.0, 0.97)], SHARE)
    assert (k.lower_rps, k.upper_rps) == (0.9, None)
    assert k.resource == PRIMARY_SLOTS
    assert "1 req/s failed in some" in k.resource_why


def test_noisy_repeats_still_give_an_interval_around_the_truth() -> None:
    rng = random.Random(3)
    probe, asked = stack(6.0, noise=lambda _r: rng.uniform(-0.4, 0.4))
    k = search(probe, SearchPlan(start_rps=1.0, max_probes=8, repeats=2)).knee
    assert len(asked) <= 8
    assert k.lower_rps <= knee_of(6.4) and (k.upper_rps or math.inf) >= knee_of(5.6)


def test_an_invalid_probe_never_holds() -> None:
    late = ProbeResult(1.0, 1.0, False, 10, invalid_reason="the load client fell behind")
    assert not late.holds(SHARE)
    assert not ProbeResult(1.0, None, True).holds(SHARE)  # nothing was sent


@pytest.mark.parametrize(
    "plan, named",
    [
        (SearchPlan(max_probes=0), "--max-probes 0"),
        (SearchPlan(start_rps=-1.0), "start rate -1"),
        (SearchPlan(growth=1.0), "growth 1"),
        (SearchPlan(goodput_share=1.5), "goodput share 1.5"),
        (SearchPlan(repeats=-1), "repeats -1"),
    ],
)
def test_a_bad_plan_is_refused_before_any_probe(plan: SearchPlan, named: str) -> None:
    probe, asked = stack(5.0)
    with pytest.raises(InputError, match=named):
        search(probe, plan)
    assert asked == []


# -- the limiting resource, from recorded /metrics series --------------------------------------


def rows(engine: str, n: int, **values: float) -> list[dict[str, float | str]]:
    base = {"kv_usage": 0.01, "running": 0.0, "waiting": 0.0, "preemptions": 0.0}
    return [{"t": 1000.0 + i * 0.25, "engine": engine, **base, **values} for i in range(n)]


def classify(series: list[dict[str, float | str]]) -> str:
    found, _why = limiting_resource(
        series, classifier="vllm-router", primary="vllm-primary",
        max_num_seqs={"vllm-router": 3, "vllm-primary": 3},
    )  # fmt: skip
    return found


def test_requests_queued_at_the_primarys_full_slots_name_its_slots() -> None:
    series = rows("vllm-router", 40, running=1) + rows("vllm-primary", 40, running=3, waiting=2)
    assert classify(series) == PRIMARY_SLOTS


def test_requests_queued_at_the_classifier_name_the_classifier() -> None:
    series = rows("vllm-router", 40, running=3, waiting=4) + rows("vllm-primary", 40, running=2)
    assert classify(series) == CLASSIFIER


def test_both_queued_names_the_longer_queue() -> None:
    series = rows("vllm-router", 40, running=3, waiting=1) + rows(
        "vllm-primary", 40, running=3, waiting=5
    )
    assert classify(series) == PRIMARY_SLOTS


def test_waiting_with_a_free_slot_and_a_full_pool_names_the_kv_pool() -> None:
    series = rows("vllm-router", 40) + rows("vllm-primary", 40, running=2, waiting=1, kv_usage=0.95)
    assert classify(series) == PRIMARY_KV


def test_preemptions_name_the_kv_pool() -> None:
    primary = rows("vllm-primary", 40, running=3)
    for i, r in enumerate(primary):
        r["preemptions"] = float(i // 20)
    assert classify(rows("vllm-router", 40) + primary) == PRIMARY_KV


def test_no_queue_at_any_limit_is_compute() -> None:
    series = rows("vllm-router", 40, running=1) + rows("vllm-primary", 40, running=2)
    found, why = limiting_resource(
        series, classifier="vllm-router", primary="vllm-primary",
        max_num_seqs={"vllm-router": 3, "vllm-primary": 3},
    )  # fmt: skip
    assert found == COMPUTE and "latency grew anyway" in why


def test_a_brief_queue_below_bound_share_binds_nothing() -> None:
    primary = rows("vllm-primary", 100, running=3)
    for r in primary[:5]:
        r["waiting"] = 1.0  # 5 % of the samples
    assert classify(rows("vllm-router", 100) + primary) == COMPUTE


# -- over-saturation ----------------------------------------------------------------------------


def test_a_queue_growing_through_the_probe_is_over_saturation() -> None:
    series = rows("vllm-primary", 80, running=3)
    for i, r in enumerate(series):
        r["waiting"] = float(i // 8)  # 0 .. 9 over 20 s
    why = over_saturation(series, [], window=(1000.0, 1020.0), queue_rise=3, ttft_rise_s=1.0)
    assert why is not None and "vllm-primary" in why


def test_a_steady_queue_is_not_over_saturation() -> None:
    rng = random.Random(1)
    series = rows("vllm-primary", 80, running=3)
    for r in series:
        r["waiting"] = float(rng.choice([0, 1, 2]))
    assert over_saturation(series, [], window=(1000.0, 1020.0), queue_rise=3, ttft_rise_s=1) is None


def test_queues_filling_at_the_probes_start_are_no_growth() -> None:
    series = rows("vllm-primary", 80, running=3)
    for i, r in enumerate(series):
        r["waiting"] = min(6.0, i * 0.6)  # fills to 6 in the first 2.5 s, then holds
    start = 1000.0 + fill_s(20.0)
    assert fill_s(20.0) == 3.0
    assert over_saturation(series, [], window=(start, 1020.0), queue_rise=3, ttft_rise_s=1) is None
    # the same series judged from its first sample would call the fill a growth
    assert over_saturation(series, [], window=(1000.0, 1008.0), queue_rise=3, ttft_rise_s=1)


def record(t: float, ttft: float) -> RequestRecord:
    return RequestRecord("U", "router", t, t, 200, True, route="local", ttft_s=ttft, e2e_s=ttft)


def test_ttft_rising_with_send_time_is_over_saturation() -> None:
    rng = random.Random(2)
    rising = [record(1000 + i * 0.2, 0.5 + 0.1 * i * 0.2 + rng.uniform(0, 0.1)) for i in range(100)]
    why = over_saturation([], rising, window=(1000.0, 1020.0), queue_rise=3, ttft_rise_s=1.15)
    assert why is not None and "TTFT rose" in why
    flat = [record(1000 + i * 0.2, 0.5 + rng.uniform(0, 0.3)) for i in range(100)]
    assert over_saturation([], flat, window=(1000.0, 1020.0), queue_rise=3, ttft_rise_s=1) is None


# -- the open-loop schedule and the probe's limits -----------------------------------------------


def test_the_poisson_schedule_keeps_its_rate_and_ends_on_time() -> None:
    s = PoissonSchedule(5.0, 200.0, start=0.0, seed=7)
    dues = []
    while (due := s.next_due()) is not None:
        dues.append(due)
    assert all(LEAD_S <= d < LEAD_S + 200.0 for d in dues)
    assert dues == sorted(dues)
    assert len(dues) == pytest.approx(1000, rel=0.1)
    assert s.next_due() is None


def test_the_pool_covers_every_arrival_of_a_probe() -> None:
    assert pool_size(2.0, 20.0) >= 40
    assert pool_size(1000.0, 60.0) == 400  # capped
    with pytest.raises(ValueError):
        pool_size(0.0, 20.0)


def test_a_probe_at_a_low_rate_runs_until_enough_requests_arrived() -> None:
    cfg = ProbeConfig(duration_s=20.0, min_requests=25)
    assert cfg.duration_for(5.0) == 20.0
    assert cfg.duration_for(1.0) == 25.0
    assert cfg.duration_for(0.1) == 40.0  # at most twice the probe


def test_the_request_cut_and_ttft_rise_come_from_the_routes_limits() -> None:
    twin = SloTable(
        "steady", "twin", routes={"local": {"p95_ttft_s": 2.3, "p95_e2e_s": 3.6},
                                  "search": {"p95_ttft_s": 1.3}},
    )  # fmt: skip
    assert request_cut_for(twin, 60.0) == pytest.approx(7.2)
    assert ttft_rise_for(twin, 0.5) == pytest.approx(0.65)
    bare = SloTable("saturate", "twin")
    assert request_cut_for(bare, 60.0) == 60.0 and ttft_rise_for(bare, 0.5) == 1.0


# -- the report -------------------------------------------------------------------------------


def test_the_record_section_validates_and_renders(tmp_path: Path) -> None:
    probe, _ = stack(5.0)
    plan = SearchPlan(start_rps=1.0)
    result = search(probe, plan)
    sec = report.capacity_section(
        result, plan, ProbeConfig(), tmp_path, wall_s=250.0, target="twin",
        slo=SloTable("steady", "twin", routes={"local": {"p95_ttft_s": 2.3}}),
    )  # fmt: skip
    doc = {
        "schema_version": 1, "run_id": "r", "target": "twin", "status": "passed",
        "started_at": "2026-12-07T00:00:00Z", "capacity": {"result": sec},
    }  # fmt: skip
    validate_record(doc)
    md = "\n".join(report.markdown(doc))
    assert "## Capacity" in md and "limiting resource: primary slots" in md
    page = report.html(doc)
    assert 'id="plot-capacity-curve"' in page and 'class="knee"' in page
    assert page.count("<circle") == 2 * len(sec["probes"])
    lines = report.console_lines(sec)
    assert lines[0].startswith("capacity (steady through the ai-router, twin")
    assert "req/s" in lines[1] and "tok/s" in lines[1]


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, named",
    [
        (["--max-probes", "0"], "--max-probes: '0': must be 1 or more"),
        (["--start-rps", "-2"], "--start-rps: '-2': must be above 0"),
        (["--start-rps", "0"], "--start-rps: '0': must be above 0"),
        (["--probe", "-5s"], "--probe"),
    ],
)
def test_bad_options_exit_2_before_anything_starts(
    argv: list[str], named: str, no_stack_reports: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["capacity", *argv])
    assert exc.value.code == 2
    assert named in capsys.readouterr().err
    assert not no_stack_reports.exists()


def test_a_bad_capacity_table_exits_2_before_anything_starts(
    no_stack_reports: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "harness.toml"
    config.write_text("[capacity]\nstart_rps = -1.0\n")
    assert main(["--config", str(config), "capacity"]) == 2
    assert "start rate -1 req/s: must be above 0" in capsys.readouterr().err
    assert not no_stack_reports.exists()
