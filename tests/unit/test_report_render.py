"""report.md and report.html: every section, every plot, escaped text, no external resource;
and the page in a real headless Chromium when one is installed."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import capacity_fixtures
import pytest
import report_fixtures as fixtures

from harness.errors import CapabilityError
from harness.report.compare import compare
from harness.report.finalize import finalize_run
from harness.report.history import read_history
from harness.report.render_html import render_html
from harness.report.render_md import render_markdown
from harness.report.summary import history_line

EVIL = '<script>alert("x")</script>'
PLOTS = [
    "plot-latency-ttft",
    "plot-latency-itl",
    "plot-latency-e2e",
    "plot-confusion",
    "plot-long-context",
    "plot-vram",
    *(
        f"plot-timeline-{p}-{e}-{k}"
        for p in fixtures.PROFILES
        for e in fixtures.ENGINES
        for k in ("kv", "queue")
    ),
]


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.svgs: dict[str, list[str]] = {}  # id -> its <title> texts
        self.stack: list[str] = []
        self.opened = self.closed = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "svg":
            self.opened += 1
            self.stack.append(dict(attrs)["id"] or "")
            self.svgs[self.stack[-1]] = []
        self._in_title = tag == "title" and bool(self.stack)

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self.closed += 1
            self.stack.pop()
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.svgs[self.stack[-1]].append(data)


def parse(html: str) -> Tags:
    t = Tags()
    t.feed(html)
    return t


def full_run(tmp_path: Path, doc: dict[str, Any] | None = None) -> Path:
    miss = {"id": EVIL, "expected": "local", "got": "search", "reason": EVIL}
    doc = fixtures.set_in(doc or fixtures.record(), "acceptance.routing.misses", [miss])
    return fixtures.write_run(tmp_path, doc)


def test_markdown_has_every_section() -> None:
    doc = fixtures.record()
    md = render_markdown(doc)
    assert md.startswith("# Run 20261126T062715Z-twin: PASSED")
    assert "target `twin`" in md and "compose ea965b03eff1" in md
    assert "Routing accuracy **96.7 %** on 60 items" in md
    assert "Long context: 20 of 20 passed" in md
    assert "KV capacity vllm-primary: 232,448 tokens (7.09x max-model-len), predicted 232,960" in md
    assert "| steady | local | 20 | 1,700 | 3,060 |" in md
    assert "| kv-pressure | vllm-primary | 95 % |" in md  # KV in %
    assert "Errors: steady 0 % (0/40)" in md
    assert "## Comparison" not in md
    assert len(md.splitlines()) < 60  # a screenful, for a chat message


def test_a_twin_kv_pool_set_to_the_prediction_is_not_shown_as_a_measurement() -> None:
    doc = fixtures.set_in(
        fixtures.record(), "acceptance.kv_capacity.vllm-primary.prediction_check", "exact"
    )
    md = render_markdown(doc)
    assert (
        "vllm-primary: 232,448 tokens (7.09x max-model-len), set to the predicted 232,960 "
        "(twin: forced, not measured)" in md
    )
    assert "predicted 232,960 (+" not in md and "232,960 (-" not in md
    assert "forced, not measured (twin)" in render_html(doc)


def test_markdown_names_long_context_failures_and_fallbacks() -> None:
    doc = fixtures.record()
    doc["acceptance"]["long_context"][0].update(reason="fallback:timeout")
    doc["acceptance"]["long_context"][1].update(classifier_prompt_tokens=512)
    doc["acceptance"]["routing"]["fallbacks"] = 2
    md = render_markdown(doc)
    assert "Long context: 18 of 20 passed; **1 fallback, 1 truncated**" in md
    assert "last/local at 32,760 tokens: fallback (HTTP 200, fallback:timeout, classifier" in md
    assert "truncated (HTTP 200, classified, classifier saw 512)" in md
    assert "fallbacks 2" in md


def test_markdown_carries_the_comparison_verdict() -> None:
    base = fixtures.record()
    cur = fixtures.set_in(
        fixtures.record("20261127T000000Z-twin"), "load.steady.latency.local.ttft_s.p95", 9.0
    )
    md = render_markdown(cur, compare(cur, base))
    assert "**REGRESSION against 20261126T062715Z-twin: load.steady.local.ttft_p95_s" in md
    assert "load.steady.local.ttft_p95_s  3,060 ms  9,000 ms" in md
    ok = render_markdown(base, compare(base, base))
    assert "**no regression against 20261126T062715Z-twin" in ok


def test_markdown_of_partial_runs() -> None:
    only_load = render_markdown(fixtures.record(acceptance={}))
    assert "## Load" in only_load and "## Acceptance" not in only_load
    only_acc = render_markdown(fixtures.set_in(fixtures.record(), "load", {}))
    assert "## Acceptance" in only_acc and "## Load" not in only_acc
    empty = render_markdown(fixtures.record(acceptance={}, load={}))
    assert "No acceptance or load results in this run." in empty


def test_html_has_every_plot_with_a_title(tmp_path: Path) -> None:
    run_dir = full_run(tmp_path)
    history = [history_line(fixtures.record(f"2026112{i}T062715Z-twin")) for i in range(3)]
    html = render_html(fixtures.record(), run_dir, history=history)
    tags = parse(html)
    assert tags.opened == tags.closed == len(tags.svgs)
    for plot in [
        *PLOTS,
        "plot-trend-accuracy",
        *(f"plot-trend-ttft-{p}" for p in fixtures.PROFILES),
    ]:
        assert plot in tags.svgs, plot
        assert tags.svgs[plot], f"{plot} has no <title>"
    queue = re.search(r'<svg id="plot-timeline-steady-vllm-primary-queue".*?</svg>', html)
    assert queue and 'stroke-dasharray="6 4"><title>max-num-seqs 3</title>' in queue.group(0)
    assert "Routing confusion matrix" in tags.svgs["plot-confusion"][0]


def test_html_is_self_contained_and_escaped(tmp_path: Path) -> None:
    run_dir = full_run(tmp_path)
    miss = {"id": EVIL, "expected": "local", "got": "x", "reason": EVIL}
    doc = fixtures.set_in(fixtures.record(), "acceptance.routing.misses", [miss])
    html = render_html(doc, run_dir, comparison_=compare(doc, fixtures.record()))
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "fp8 KV &lt;b&gt;cache&lt;/b&gt;" in html  # a preflight finding's message
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "<link" not in html and "url(" not in html and "@import" not in html
    assert "xmlns" not in html
    assert "default-src 'none'" in html  # the CSP makes Chromium refuse any load


def test_html_without_timelines_or_sections_still_renders(tmp_path: Path) -> None:
    html = render_html(fixtures.record(), None)
    assert "no timeline.jsonl for this profile" in html
    assert "plot-timeline" not in html
    bare = render_html(fixtures.record(acceptance={}, load={}, preflight={}, stack={}))
    assert "<svg" not in bare and "</html>" in bare


def test_finalize_writes_both_reports_with_trends(tmp_path: Path) -> None:
    older = fixtures.write_run(
        tmp_path, fixtures.record("20261125T062715Z-twin", started_at="2026-11-25")
    )
    finalize_run(older)
    run_dir = full_run(tmp_path)
    written = finalize_run(run_dir)
    assert [p.name for p in written] == ["report.md", "report.html"]
    html = (run_dir / "report.html").read_text()
    assert "Trends over the last 2 runs" in html and 'id="plot-trend-accuracy"' in html
    assert len(read_history(tmp_path / "history.jsonl")) == 2
    assert not (run_dir / "report.html.tmp").exists()


def test_report_html_renders_in_chromium(tmp_path: Path) -> None:
    """The whole page, with a capacity curve, the envelope heatmaps and a capacity trend, in
    one headless Chromium: no console error, and each of those plots laid out with a size."""
    from harness.report.browser import check, find_chromium

    try:
        find_chromium()
    except CapabilityError as exc:
        pytest.skip(f"headless check needs Debian's chromium: {exc}")
    for day, rps in ((23, 2.1), (24, 2.4)):
        doc = capacity_fixtures.capacity_record(
            f"202611{day}T050000Z-twin-capacity", rps, (rps - 0.3, rps + 0.4)
        )
        finalize_run(fixtures.write_run(tmp_path, doc, timelines=False))
    fixtures.write_run(tmp_path, fixtures.record("20261125T062715Z-twin", started_at="2026-11-25"))
    finalize_run(tmp_path / "runs" / "20261125T062715Z-twin")
    doc = capacity_fixtures.envelope_record(
        capacity={"result": capacity_fixtures.capacity_result(2.6, (2.3, None))}
    )
    run_dir = full_run(tmp_path, doc)
    finalize_run(run_dir, baseline=tmp_path / "runs" / "20261125T062715Z-twin" / "record.json")
    png = run_dir / "report.png"
    plots = [
        "#plot-capacity-curve",
        "#plot-envelope-vllm-primary",
        "#plot-envelope-vllm-router",
        "#plot-trend-capacity-steady",
    ]
    errors, found = check(run_dir / "report.html", png, plots)
    assert errors == []
    for plot in plots:
        assert len(found[plot]) == 1, (plot, found)
        box = found[plot][0]
        assert box["right"] - box["left"] > 100 and box["bottom"] - box["top"] > 100, (plot, box)
    assert png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_chromium_check_reports_console_errors(tmp_path: Path) -> None:
    from harness.report.browser import find_chromium, screenshot

    try:
        find_chromium()
    except CapabilityError as exc:
        pytest.skip(f"headless check needs Debian's chromium: {exc}")
    page = tmp_path / "bad.html"
    page.write_text(
        "<!DOCTYPE html><html><body><p>x</p><script>console.error('boom');"
        "throw new Error('kaput')</script></body></html>"
    )
    errors = screenshot(page, tmp_path / "bad.png")
    assert any("console.error: boom" in e for e in errors), errors
    assert any(e.startswith("Uncaught") and "kaput" in e for e in errors), errors


def test_missing_chromium_is_a_capability_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.report import browser

    monkeypatch.setenv("HARNESS_CHROMIUM", "/nonexistent/chromium")
    monkeypatch.setattr(browser, "CHROMIUM", "/nonexistent/chromium")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(CapabilityError, match="apt-get install -y chromium"):
        browser.find_chromium()


def test_the_engines_memory_breakdown_sits_beside_the_vram_model() -> None:
    from harness.report.render_html import memory_rows

    kv = {
        "vllm-router": {
            "memory": {
                "model": {"budget_gib": 13.38, "weights_gib": 5.75, "reserve_gib": 2.0,
                          "kv_pool_gib": 5.63},
                "engine": {"requested_gib": 13.31, "model_loading_gib": 5.79,
                           "reserve_gib": 1.1, "kv_cache_gib": 6.42},
            }
        },
        "vllm-primary": {"memory": {"model": {"budget_gib": 62.14}, "engine": None}},
    }  # fmt: skip
    rows = memory_rows(kv)
    assert rows[0][:2] == ["vllm-router", "VRAM model"] and rows[0][5] == "5.63"
    assert rows[1] == ["vllm-router", "vLLM startup log", "13.31", "5.79", "1.10", "6.42"]
    assert [r[1] for r in rows[2:]] == ["VRAM model"]
