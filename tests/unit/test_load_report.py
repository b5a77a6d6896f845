"""What a load run's report shows beyond percentiles: goodput against the SLOs, TPOT and output
tokens per route, latency over time and against concurrency, links to the raw data, ITL as n/a
for answers in one read, and the engine's histogram median only as a bucket."""

from __future__ import annotations

import json
from pathlib import Path

import report_fixtures as fixtures

from harness.load.goodput import goodput
from harness.load.records import RequestRecord
from harness.load.series import by_concurrency, over_time
from harness.load.slo_table import SloTable
from harness.load.stats import latency_stats
from harness.report.render_html import render_html
from harness.report.render_md import render_markdown


def rec(start: float, ttft: float, e2e: float, route: str = "local", **kw: object) -> RequestRecord:
    return RequestRecord(
        "ChatUser", "router", start, start, 200, True, route=route, ttft_s=ttft, e2e_s=e2e,
        output_tokens=kw.pop("output_tokens", 11), **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def test_goodput_counts_requests_within_their_routes_limits() -> None:
    table = SloTable(
        "steady", "twin", routes={"local": {"p95_ttft_s": 1.0}, "all": {"p95_e2e_s": 3.0}}
    )
    records = [
        rec(0.0, 0.5, 2.0),  # good
        rec(1.0, 1.5, 2.0),  # TTFT over the local limit
        rec(2.0, 0.5, 4.0),  # E2E over the all limit
        rec(3.0, 2.0, 2.5, route="search"),  # search has no TTFT limit: good
    ]
    records.append(RequestRecord("ChatUser", "router", 4.0, 4.0, 502, False, route="local"))
    out = goodput(table, records)
    assert out["local"]["good"] == 1 and out["local"]["requests"] == 4
    assert out["search"]["good"] == 1
    assert out["all"]["good"] == 2
    assert out["all"]["goodput_rps"] == 2 / 6.0  # the successful requests span 0.0-6.0 s


def test_tpot_output_throughput_and_no_itl_for_one_read_answers() -> None:
    records = [rec(0.0, 0.5, 1.5, itl_s=[0.1] * 10), rec(1.0, 0.2, 0.2, route="search")]
    stats = latency_stats(records)
    assert abs(stats["local"]["tpot_s"]["p50"] - 0.1) < 1e-9
    assert stats["search"]["itl_s"]["p50"] is None  # never 0
    assert stats["all"]["output_throughput_tok_s"] == 22 / 1.5


def test_series_over_time_and_by_concurrency() -> None:
    # 1 request alone, then 3 at once.
    records = [rec(0.0, 0.1, 1.0), *(rec(2.0, 0.3, 1.0) for _ in range(3))]
    width, bins = over_time(records)
    assert width == 1.0 and [b.started for b in bins] == [1, 0, 3]
    assert bins[2].ttft_p50_ms is not None and abs(bins[2].ttft_p50_ms - 300.0) < 1e-6
    levels = {c.in_flight: c for c in by_concurrency(records)}
    assert set(levels) == {1, 3} and levels[3].requests == 3


def test_reports_in_ms_with_links_buckets_and_n_a(tmp_path: Path) -> None:
    doc = fixtures.record()
    steady = doc["load"]["steady"]
    steady["latency"]["search"]["itl_s"].update(p50=None, p95=None, n=0.0)
    steady["engines"]["vllm-primary"]["ttft_server_p50_bucket_s"] = [0.25, 0.5]
    steady["reconciliation"] = {
        "vllm-primary": {
            "client_requests": 20, "engine_requests": 20.0, "client_prompt_tokens": 600,
            "engine_prompt_tokens": 600.0, "client_output_tokens": 160,
            "engine_output_tokens": 160.0, "tokens_compared": True,
            "client_ttft_mean_ms": 412.0, "engine_ttft_mean_ms": 405.5,
            "ttft_mean_diff_ms": 6.5, "problems": [],
        }
    }  # fmt: skip
    run_dir = fixtures.write_run(tmp_path, doc)
    records = [rec(float(i), 0.4, 1.4, itl_s=[0.03] * 10) for i in range(8)]
    (run_dir / "load" / "ramp").mkdir(parents=True, exist_ok=True)
    for profile in ("steady", "ramp"):
        path = run_dir / "load" / profile / "requests.jsonl"
        path.write_text("".join(json.dumps(vars(r)) + "\n" for r in records))
    md = render_markdown(doc)
    assert "| steady | search | 20 | 780 | 1,404 | n/a | n/a |" in md
    assert "engine TTFT median bucket-bounded in (250, 500] ms" in md
    assert "client TTFT mean 412.0 ms, engine 405.5 ms (exact, _sum/_count): +6.5 ms" in md
    html = render_html(doc, run_dir)
    assert '<a href="load/steady/requests.jsonl">requests.jsonl</a>' in html
    assert 'id="plot-client-steady-ttft-over-time"' in html
    assert 'id="plot-client-ramp-ttft-by-concurrency"' in html
    assert 'id="plot-client-steady-ttft-by-concurrency"' not in html
    assert "TTFT p50 ms" in html and "goodput req/s" in html


def test_each_engine_is_judged_against_its_own_max_num_seqs() -> None:
    """A tune of the primary's --max-num-seqs leaves the classifier's alone: the load summary
    shows each engine's running requests against its own limit."""
    from harness.load.stats import engine_stats
    from harness.telemetry.sampler import Sampler

    sampler = Sampler({e: "http://unused" for e in fixtures.ENGINES}, nvml=False)
    sampler.rows = fixtures.timeline()
    limits = {e: 3 + i for i, e in enumerate(fixtures.ENGINES)}
    stats = engine_stats(sampler, limits)
    assert {e: s["max_num_seqs"] for e, s in stats.items()} == limits
    assert {s["max_num_seqs"] for s in engine_stats(sampler, 4).values()} == {4}
