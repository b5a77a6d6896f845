"""`harness tune --judge capacity --envelope ENGINE`: the safe envelope before and after the
change, its difference in the verification run's record and on the report's first screen, beside
the capacity verdict it does not change (harness.tune_envelope, harness.report.tune)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import report_fixtures as fixtures
from test_tune_capacity import FakeCapacity, cap

from harness.cli.tune_judge import CapacityJudge
from harness.errors import StackError
from harness.report.render_html import render_html
from harness.report.render_md import render_markdown
from harness.tune_capacity import capacity_judgement, tune_section
from harness.tune_envelope import engine_diff, envelope_diff, lines

PROMPTS = (32512, 256)


def cell(p: int, k: int, passed: bool, bound: str = "none") -> dict[str, Any]:
    return {"prompt_tokens": p, "concurrency": k, "passed": passed, "measured_bound": bound}


def engine(seqs: int, cells: list[dict[str, Any]], kv: int = 49152) -> dict[str, Any]:
    return {
        "engine": "vllm-primary", "role": "primary", "max_model_len": 32768,
        "max_num_seqs": seqs, "kv_tokens": kv, "kv_source": "--kv-tokens what-if",
        "output_tokens": 256, "cells": cells,
    }  # fmt: skip


# Three slots: the long prompt fits the pool twice, the short one binds at the slots (4 waits).
BEFORE = engine(3, [
    cell(32512, 1, True), cell(32512, 2, True, "kv"), cell(32512, 3, False, "kv"),
    cell(32512, 4, False, "kv"),
    cell(256, 1, True), cell(256, 2, True), cell(256, 3, True), cell(256, 4, True, "slots"),
])  # fmt: skip
# Two slots: the grid loses its fourth column; two long prompts now bind at the slots too.
AFTER = engine(2, [
    cell(32512, 1, True), cell(32512, 2, True, "kv"), cell(32512, 3, False, "kv"),
    cell(256, 1, True), cell(256, 2, True), cell(256, 3, True, "slots"),
])  # fmt: skip


def test_the_difference_names_each_changed_cell_and_the_safe_concurrency() -> None:
    d = engine_diff(BEFORE, AFTER)
    assert d["before"]["max_num_seqs"] == 3 and d["after"]["max_num_seqs"] == 2
    assert d["safe"] == [
        {"prompt_tokens": 32512, "before": 2, "after": 2},
        {"prompt_tokens": 256, "before": 4, "after": 3},
    ]
    assert d["changed"] == [
        {"prompt_tokens": 32512, "concurrency": 4, "before": "FAIL kv", "after": "not measured"},
        {"prompt_tokens": 256, "concurrency": 3, "before": "pass", "after": "pass slots"},
        {"prompt_tokens": 256, "concurrency": 4, "before": "pass slots", "after": "not measured"},
    ]
    assert d["cells"] == [8, 6]


def test_an_unchanged_envelope_says_no_cell_changed() -> None:
    d = envelope_diff({"engines": [BEFORE]}, {"engines": [BEFORE]}, ("b", "a"))
    assert d["error"] is None and d["engines"][0]["changed"] == []
    out = lines(d)
    assert out[0].startswith("envelope vllm-primary: most concurrent requests")
    assert "32,512: 2 -> 2, 256: 4 -> 4" in out[0] and out[1].strip() == "0 cell(s) changed"


def test_the_console_lines_give_the_shape_change_and_the_cells() -> None:
    out = lines(envelope_diff({"engines": [BEFORE]}, {"engines": [AFTER]}))
    assert "(max-num-seqs 3 -> 2)" in out[0] and "256: 4 -> 3" in out[0]
    assert out[1].strip().startswith("3 cell(s) changed: 32,512x4 FAIL kv -> not measured")


def test_a_missing_envelope_is_reported_not_compared() -> None:
    d = envelope_diff({"engines": [BEFORE]}, None, ("b", None), "harness envelope failed")
    assert d["engines"] == [] and lines(d) == ["envelope: not compared (harness envelope failed)"]


class FakeEnvelope(FakeCapacity):
    """Capacity and envelope answers from lists; an envelope answer None fails that run."""

    def __init__(self, compose: Path, caps: list[Any], envelopes: list[Any]) -> None:
        super().__init__(compose, caps)
        self.envelope, self.envelopes = "primary", envelopes

    def measure_envelope(self, when: str) -> tuple[Path, Any]:
        self.files.append((f"envelope {when}", self.compose.read_bytes()))
        answer = self.envelopes.pop(0)
        if answer is None:
            raise StackError("harness envelope (the envelope after the change) failed (exit 2)")
        return Path(f"/runs/{when}"), answer


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import harness.report.finalize as finalize

    run = tmp_path / "run"
    run.mkdir()
    (run / "record.json").write_text(json.dumps({"run_id": "x", "status": "passed"}))
    monkeypatch.setattr(finalize, "finalize_run", lambda d: [])
    return run


def test_the_envelope_is_measured_beside_each_capacity_and_recorded(
    real_compose: Path, run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    judge = FakeEnvelope(real_compose, [cap(2, 4), cap(4, 8)], [{"engines": [BEFORE]},
                                                               {"engines": [AFTER]}])  # fmt: skip
    judge.changes = ("vllm-primary.--max-num-seqs=2",)
    judge.measure_before()
    verdict = judge.decide(0, run)
    assert [w for w, _ in judge.files] == [
        "before the change", "envelope before the change",
        "after the change", "envelope after the change",
    ]  # fmt: skip
    tune = json.loads((run / "record.json").read_text())["tune"]
    assert verdict.keep and tune["capacity"]["changes"] == ["vllm-primary.--max-num-seqs=2"]
    assert tune["envelope"]["runs"] == ["/runs/before the change", "/runs/after the change"]
    assert len(tune["envelope"]["engines"][0]["changed"]) == 3
    assert "tune: envelope vllm-primary (max-num-seqs 3 -> 2)" in capsys.readouterr().out


def test_a_failed_envelope_after_leaves_the_verdict_to_the_capacity(
    real_compose: Path, run: Path
) -> None:
    judge = FakeEnvelope(real_compose, [cap(2, 4), cap(4, 8)], [{"engines": [BEFORE]}, None])
    judge.measure_before()
    assert judge.decide(0, run).keep
    envelope = json.loads((run / "record.json").read_text())["tune"]["envelope"]
    assert "failed (exit 2)" in envelope["error"] and envelope["engines"] == []


def test_without_envelope_nothing_is_measured_or_recorded(real_compose: Path, run: Path) -> None:
    judge = FakeCapacity(real_compose, [cap(2, 4), cap(4, 8)])
    judge.measure_before()
    judge.decide(0, run)
    assert [w for w, _ in judge.files] == ["before the change", "after the change"]
    assert "envelope" not in json.loads((run / "record.json").read_text())["tune"]


def test_the_envelope_command_matches_the_capacity_target(real_compose: Path) -> None:
    judge = CapacityJudge(real_compose, "attach", Path("h.toml"), envelope="both")
    assert judge.envelope_argv()[1:] == [
        "--config", "h.toml", "envelope", "--target", "attach", "--compose", str(real_compose),
        "--engine", "both",
    ]  # fmt: skip


def test_envelope_without_the_capacity_judge_is_refused(
    real_compose: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli import main

    argv = ["tune", "vllm-primary.--max-num-seqs=4", "--compose", str(real_compose)]
    assert main([*argv, "--envelope", "primary"]) == 2
    assert "--envelope primary: the envelope is measured only with --judge capacity" in (
        capsys.readouterr().err
    )


def tuned_record() -> dict[str, Any]:
    before, after = cap(2, 4), cap(4, 8)
    j = capacity_judgement(True, before, after)
    doc = fixtures.record()
    doc["tune"] = {
        "capacity": tune_section(True, before, after, j, ["vllm-primary.x=1"]),
        "envelope": envelope_diff({"engines": [BEFORE]}, {"engines": [AFTER]}),
    }
    return doc


def test_the_report_opens_with_the_tune_decision() -> None:
    md = render_markdown(tuned_record())
    section = md.index("## Tune, judged by capacity")
    assert section < md.index("## Acceptance")
    for text in (
        "- change: vllm-primary.x=1",
        "- verdict: keep; acceptance passed, capacity raised",
        "- capacity before: 2 req/s (interval 2-4, primary slots; 2 and 2 trial(s) at its ends)",
        "- capacity after: 4 req/s (interval 4-8",
        "- envelope vllm-primary (max-num-seqs 3 -> 2)",
        "| vllm-primary | 256 | 3 | pass | pass slots |",
    ):
        assert text in md[section:], text
    html = render_html(tuned_record())
    assert html.index('<h2 id="tune">') < html.index("<h2>Routing")
    assert "<h3>Envelope cells that changed</h3>" in html


def test_no_tune_section_on_other_runs() -> None:
    assert "## Tune" not in render_markdown(fixtures.record())
    assert 'id="tune"' not in render_html(fixtures.record())
