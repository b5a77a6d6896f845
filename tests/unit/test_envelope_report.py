"""The safe envelope in the reports: the record section's schema, report.html's heatmap per
engine (`plot-envelope-<engine>`) and report.md's table."""

from __future__ import annotations

import copy
import re

import capacity_fixtures as cf
import pytest
import report_fixtures as fixtures

from harness.errors import InputError
from harness.report import envelope
from harness.report.render_html import render_html
from harness.report.render_md import render_markdown
from harness.report.schema import validate_record

EVIL = '<script>alert("x")</script>'


def svg_of(page: str, plot_id: str) -> str:
    found = re.search(rf'<svg id="{plot_id}".*?</svg>', page, re.S)
    assert found, f"no {plot_id}"
    return found.group(0)


def test_the_fixture_record_validates_and_a_wrong_bound_names_its_field() -> None:
    doc = cf.envelope_record()
    validate_record(doc)
    bad = copy.deepcopy(doc)
    bad["envelope"]["result"]["engines"][0]["cells"][5]["measured_bound"] = "pool"
    with pytest.raises(InputError, match=r"envelope\.result\.engines\[0\]\.cells\[5\]"):
        validate_record(bad)
    missing = copy.deepcopy(doc)
    del missing["envelope"]["result"]["engines"][1]["cells"][0]["agrees"]
    with pytest.raises(InputError, match="'agrees' is a required property"):
        validate_record(missing)


def test_each_engine_gets_a_heatmap_with_a_cell_per_measurement() -> None:
    page = envelope.html(cf.envelope_record())
    for engine in ("vllm-primary", "vllm-router"):
        plot = svg_of(page, f"plot-envelope-{engine}")
        assert plot.count('<g class="cell') == 16
        assert "<title" in plot and "max-num-seqs 3" in plot
    primary = svg_of(page, "plot-envelope-vllm-primary")
    assert primary.count(f'fill="{envelope.FAIL_FILL}" rx="3"') == 8
    assert primary.count(f'fill="{envelope.PASS_FILL}" rx="3"') == 8
    assert "KV what-if: vllm-primary 1.5x" in page


def test_the_longest_prompt_is_the_top_row() -> None:
    primary = svg_of(envelope.html(cf.envelope_record()), "plot-envelope-vllm-primary")
    rows = {
        text: float(y)
        for y, text in re.findall(r'<text x="[\d.]+" y="([\d.]+)" text-anchor="end" '
                                  r'font-weight="600">([\d,]+)</text>', primary)
    }  # fmt: skip
    assert list(rows) == ["32,704", "16,384", "8,192", "256"]
    assert rows["32,704"] < rows["16,384"] < rows["8,192"] < rows["256"]


def test_the_disagreeing_cell_is_outlined_and_named() -> None:
    primary = svg_of(envelope.html(cf.envelope_record()), "plot-envelope-vllm-primary")
    marked = re.findall(r'<g class="cell disagrees"><title>([^<]*)</title>(.*?)</g>', primary)
    assert len(marked) == 1
    tip, body = marked[0]
    assert tip.startswith("16,384 prompt tokens x 2 concurrent: FAILED")
    assert "bound measured kv, predicted none (DISAGREES)" in tip
    assert "preemptions 1" in tip
    assert 'stroke-dasharray="5 3"' in body and "≠ pred none" in body
    assert primary.count('stroke-dasharray="5 3"') == 1  # no other cell outlined
    assert "measured ≠ predicted" in primary  # the legend says what the outline means


def test_the_caption_counts_the_cells_that_agree() -> None:
    page = envelope.html(cf.envelope_record())
    assert "measured against the KV model&#x27;s prediction: 15 of 16 cells agree" in svg_of(
        page, "plot-envelope-vllm-primary"
    )
    assert "16 of 16 cells agree" in svg_of(page, "plot-envelope-vllm-router")
    doc = cf.envelope_record()
    for c in doc["envelope"]["result"]["engines"][1]["cells"][:3]:
        c["agrees"] = False
    assert envelope.caption(doc["envelope"]["result"]["engines"][1]).endswith(
        "13 of 16 cells agree"
    )


def test_the_markdown_table_has_a_row_per_prompt_length() -> None:
    md = "\n".join(envelope.markdown(cf.envelope_record()))
    assert "## Safe envelope" in md and "### vllm-primary" in md and "### vllm-router" in md
    assert "| prompt tokens | 1 concurrent | 2 concurrent | 3 concurrent | 4 concurrent |" in md
    assert "| 32,704 | pass | FAIL kv | FAIL kv | FAIL kv |" in md
    assert "| 16,384 | pass | FAIL kv ≠ pred none | FAIL kv | FAIL kv |" in md
    assert "| 256 | pass | pass | pass | FAIL slots |" in md
    assert "| 16,384 | pass | pass | pass | pass slots |" in md  # the classifier
    assert md.index("| 32,704 |") < md.index("| 256 |")
    assert "15 of 16 cells agree" in md
    assert "Disagrees at 16,384 tokens x 2: measured kv, predicted none" in md
    assert "judged by p95 TTFT ≤ 2,300 ms, p95 E2E ≤ 3,600 ms" in md
    assert "judged by p95 TTFT ≤ 1,300 ms" in md  # the classifier's limits lack E2E


def test_an_unknown_bound_and_an_unmeasured_cell() -> None:
    doc = cf.envelope_record()
    primary = doc["envelope"]["result"]["engines"][0]
    primary["cells"][0].update(measured_bound="unknown", passed=False)
    del primary["cells"][-1]
    assert envelope.cell_text(primary["cells"][0]) == "FAIL ?"
    md = "\n".join(envelope.markdown(doc))
    assert "| 32,704 | pass | FAIL kv | FAIL kv | - |" in md
    plot = svg_of(envelope.html(doc), "plot-envelope-vllm-primary")
    assert "not measured" in plot and plot.count('<g class="cell') == 15


def test_the_run_reports_carry_the_section_and_escape_its_text() -> None:
    doc = cf.envelope_record()
    validate_record(doc)
    assert "## Safe envelope" in render_markdown(doc)
    page = render_html(doc)
    assert page.count('<svg id="plot-envelope-') == 2
    assert page.index("<h2>Safe envelope</h2>") > page.index("<h2>Load</h2>")
    evil = copy.deepcopy(doc)
    evil["envelope"]["result"]["engines"][0]["engine"] = EVIL
    evil["envelope"]["result"]["engines"][0]["cells"][0]["why"] = EVIL
    page = render_html(evil)
    assert "<script" not in page and "&lt;script&gt;" in page


def test_a_run_without_an_envelope_has_no_section() -> None:
    doc = fixtures.record()
    assert envelope.markdown(doc) == [] and envelope.html(doc) == ""
    assert "Safe envelope" not in render_markdown(doc) and "plot-envelope" not in render_html(doc)
