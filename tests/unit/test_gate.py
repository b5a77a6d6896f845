"""The regression gate against a committed baseline (harness.load.gate)."""

from __future__ import annotations

import random
from pathlib import Path

from harness.load.gate import gate, write_baseline
from harness.load.records import RequestRecord, read_records, record_line


def run(n: int, scale: float, seed: int) -> list[RequestRecord]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        route = "local" if i % 2 else "search"
        rec = RequestRecord("ChatUser", "router", 0.0, 0.0, 200, True, route, "classified")
        rec.ttft_s = scale * rng.uniform(0.1, 0.6)
        rec.e2e_s = rec.ttft_s + scale * rng.uniform(0.2, 0.8)
        out.append(rec)
    return out


def test_a_run_like_the_baseline_passes_and_one_twice_as_slow_fails() -> None:
    base = run(120, 1.0, seed=1)
    bad, lines = gate(base, run(120, 1.0, seed=2), growth=0.4, slack_s=0.05, where="b.jsonl")
    assert bad == [] and len(lines) == 6, lines
    bad, _ = gate(base, run(120, 1.2, seed=3), growth=0.4, slack_s=0.05, where="b.jsonl")
    assert bad == [], "a machine 20 % slower is within the allowance"
    bad, _ = gate(base, run(120, 2.0, seed=4), growth=0.4, slack_s=0.05, where="b.jsonl")
    assert len(bad) == 6 and all("REGRESSION" in b and "b.jsonl" in b for b in bad), bad


def test_too_few_requests_are_not_judged() -> None:
    bad, lines = gate(run(10, 1.0, 1), run(10, 5.0, 2), growth=0.4, slack_s=0.05, where="b")
    assert bad == [] and all("not judged" in line for line in lines)


def test_the_baseline_keeps_only_what_the_gate_reads(tmp_path: Path) -> None:
    recs = run(30, 1.0, seed=5)
    recs[0].itl_s, recs[0].request_id = [0.01] * 50, "abc"
    src = tmp_path / "requests.jsonl"
    src.write_text("".join(record_line(r) + "\n" for r in recs))
    assert write_baseline(src, tmp_path / "b" / "steady.jsonl") == 30
    back = read_records(tmp_path / "b" / "steady.jsonl")
    assert back[0].itl_s == [] and back[0].request_id is None
    assert back[0].ttft_s == round(recs[0].ttft_s or 0, 4) and back[0].route == recs[0].route
