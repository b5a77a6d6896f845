"""compare judges p95 latency on per-request data (requests.jsonl) where both runs have it:
a bootstrap for TTFT, Mann-Whitney for ITL, at least 20 requests a side."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import report_fixtures as fixtures

from harness.load.records import RequestRecord
from harness.load.stats import percentile
from harness.report.compare import NOT_COMPARED, OK, REGRESSION, compare

TTFT = "load.steady.local.ttft_p95_s"
ITL = "load.steady.local.itl_p95_s"


def run(
    root: Path, run_id: str, ttfts: list[float], itl: float = 0.03, write: bool = True
) -> tuple[dict[str, Any], Path]:
    rng = random.Random(run_id)
    records = [
        RequestRecord(
            "ChatUser", "router", float(i), float(i), 200, True, route="local", ttft_s=t,
            itl_s=[rng.gauss(itl, itl / 10) for _ in range(20)], e2e_s=t + 1.0, output_tokens=21,
        )
        for i, t in enumerate(ttfts)
    ]  # fmt: skip
    doc = fixtures.record(run_id)
    lat = doc["load"]["steady"]["latency"]["local"]
    lat["ttft_s"]["p95"] = percentile(ttfts, 95)
    lat["itl_s"]["p95"] = percentile([g for r in records for g in r.itl_s], 95)
    run_dir = fixtures.write_run(root, doc)
    if write:
        path = run_dir / "load" / "steady" / "requests.jsonl"
        path.write_text("".join(json.dumps(vars(r)) + "\n" for r in records))
    return doc, run_dir


def rows(cur: dict[str, Any], base: dict[str, Any], dirs: dict[str, Path]) -> dict[str, Any]:
    return {r.metric: r for r in compare(cur, base, run_dirs=dirs).rows}


def test_a_p95_moved_by_two_slow_requests_is_noise_not_a_regression(tmp_path: Path) -> None:
    rng = random.Random(1)
    base_ttft = [rng.uniform(0.2, 1.0) for _ in range(30)]
    cur_ttft = [*sorted(base_ttft)[:-2], 1.6, 1.8]  # the summary p95 grows by half
    base, bdir = run(tmp_path, "20261126T000000Z-twin", base_ttft)
    cur, cdir = run(tmp_path, "20261127T000000Z-twin", cur_ttft)
    dirs = {base["run_id"]: bdir, cur["run_id"]: cdir}
    judged = rows(cur, base, dirs)[TTFT]
    assert judged.current > judged.limit  # the old rule, summaries alone, would call it
    assert judged.verdict == OK, judged.note
    assert "bootstrap" in judged.note and "n=30/30" in judged.note
    # Without per-request data on one side, the summaries decide, as before.
    (bdir / "load" / "steady" / "requests.jsonl").unlink()
    assert rows(cur, base, dirs)[TTFT].verdict == REGRESSION


def test_every_request_slower_is_a_regression(tmp_path: Path) -> None:
    rng = random.Random(2)
    base_ttft = [rng.uniform(0.2, 1.0) for _ in range(30)]
    base, bdir = run(tmp_path, "20261126T000000Z-twin", base_ttft, itl=0.03)
    cur, cdir = run(tmp_path, "20261127T000000Z-twin", [t * 2 for t in base_ttft], itl=0.06)
    got = rows(cur, base, {base["run_id"]: bdir, cur["run_id"]: cdir})
    assert got[TTFT].verdict == REGRESSION, got[TTFT].note
    assert got[ITL].verdict == REGRESSION and "Mann-Whitney" in got[ITL].note


def test_fewer_than_twenty_requests_are_not_judged(tmp_path: Path) -> None:
    base, bdir = run(tmp_path, "20261126T000000Z-twin", [0.5] * 19)
    cur, cdir = run(tmp_path, "20261127T000000Z-twin", [5.0] * 19)
    got = rows(cur, base, {base["run_id"]: bdir, cur["run_id"]: cdir})
    assert got[TTFT].verdict == NOT_COMPARED and "< 20" in got[TTFT].note
