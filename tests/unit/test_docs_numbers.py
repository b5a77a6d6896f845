"""The worked numbers in infra/ docs are exactly what `harness check` prints."""

from __future__ import annotations

import re
from pathlib import Path

from harness.config import load_settings
from harness.vram.check import run_check
from harness.vram.render import render_markdown_table

ROOT = Path(__file__).resolve().parents[2]
BEGIN = "<!-- harness check --markdown: begin -->"
END = "<!-- harness check --markdown: end -->"


def current():
    return run_check(ROOT / "infra/docker-compose.yml", load_settings(ROOT / "harness.toml"))


def test_vram_requirements_embeds_the_current_check_output() -> None:
    text = (ROOT / "infra/vram-requirements.md").read_text()
    embedded = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    result = current()
    expected = render_markdown_table(result)
    assert embedded == expected.strip(), "regenerate with `harness check --markdown`"


def test_readme_budget_table_matches_check() -> None:
    text = (ROOT / "infra/README.md").read_text()
    for e in current().plan.engines:
        row = next(ln for ln in text.splitlines() if ln.startswith(f"| {e.service} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == f"{e.utilization:g}"
        assert cells[2] == f"{e.budget_bytes / 2**30:.2f} GiB"
        assert cells[3] == f"{e.weight_bytes / 2**30:.2f} GiB"
        assert cells[4] == f"{e.kv_pool_bytes / 2**30:.2f} GiB"
        assert cells[5] == f"{e.max_concurrency_at_max_model_len:.2f}"
    headroom = re.search(r"leave ([0-9.]+) GiB of headroom", text)
    assert headroom and float(headroom.group(1)) == round(current().plan.headroom_bytes / 2**30, 2)
