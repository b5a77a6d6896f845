"""`harness capacity` on gpu and attach: each probe's output tokens per joule (NVML, beside the
probe) in the record, in a column of the report's table, and at the knee in the summary lines;
nothing of it on the twins, where NVML measures nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import capacity_fixtures as cf

from harness.load.capacity import ProbeResult
from harness.report import capacity as report
from harness.report.capacity import _probe_doc
from harness.report.schema import validate_record

# The fixture's probes: 1 at 2 req/s holds, 2 at 4 (the interval's lower end) holds, 3 at 8
# fails, 4 at 5 (the bisection) holds.
PER_JOULE = {1: 0.8, 2: 1.25, 3: 1.9, 4: 1.4}


def with_cost(per_joule: dict[int, float | None]) -> dict[str, Any]:
    sec = cf.capacity_result(5.0, (4.0, 8.0))
    for p in sec["probes"]:
        p["tokens_per_joule"] = per_joule.get(p["n"])
    return sec


def test_the_knee_line_names_the_probe_at_the_highest_rate_that_held() -> None:
    lines = report.console_lines(with_cost(PER_JOULE))
    # The interval's lower end is 4 req/s: probe 2. The failing probe 3 is never the knee's.
    assert lines[-1] == (
        "GPU cost at 4 req/s: 1.25 output tokens per joule (probe 2; every probe's in the table)"
    )


def test_the_table_gains_a_column_only_where_nvml_measured() -> None:
    doc = {**cf.capacity_record("20261126T050000Z-gpu-capacity", 5.0, (4.0, 8.0))}
    doc["capacity"] = {"result": with_cost(PER_JOULE)}
    validate_record(doc)
    md = "\n".join(report.markdown(doc))
    assert "| waiting max | tok/J | valid |" in md
    assert "| 4 | bisect | 5 | " in md and "| 1.4 | yes | holds |" in md
    assert "tok/J</th>" in report.html(doc)

    twin = cf.capacity_record("20261126T050000Z-twin-capacity", 5.0, (4.0, 8.0))
    md = "\n".join(report.markdown(twin))
    assert "tok/J" not in md and "GPU cost" not in md
    assert report.console_lines(twin["capacity"]["result"])[-1].startswith("4 probes of")


def test_the_probe_record_carries_the_probes_tokens_per_joule(tmp_path: Path) -> None:
    r = ProbeResult(
        rate_rps=4.0, goodput_share=1.0, valid=True, requests=80, ttft_p95_s=0.7,
        waiting_max=1.0, extra={"tokens_per_joule": 1.25},
    )  # fmt: skip
    assert _probe_doc(2, "grow", r, 0.95, tmp_path)["tokens_per_joule"] == 1.25
    bare = ProbeResult(
        rate_rps=4.0, goodput_share=1.0, valid=True, requests=80, ttft_p95_s=0.7, waiting_max=1.0
    )
    assert _probe_doc(2, "grow", bare, 0.95, tmp_path)["tokens_per_joule"] is None
