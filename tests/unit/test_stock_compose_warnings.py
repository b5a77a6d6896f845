"""The stock compose file passes `harness check` with no warning, or the README says why it
warns and what to do: each rule that warns on it is named in the README's section on it."""

from __future__ import annotations

import re
from pathlib import Path

from test_check_advice import check

from harness.vram.rules import Severity

ROOT = Path(__file__).resolve().parents[2]
SECTION = "### Why `harness check` warns on the stock compose file"


def readme_section() -> str:
    text = (ROOT / "README.md").read_text()
    assert SECTION in text, f"README.md has no section {SECTION!r}"
    body = text.split(SECTION, 1)[1]
    return re.split(r"\n#{2,3} ", body, maxsplit=1)[0]


def test_every_warning_on_the_stock_compose_is_explained_in_the_readme(
    real_compose: Path,
) -> None:
    warned = {
        (f.rule, f.service) for f in check(real_compose).findings if f.severity is Severity.WARNING
    }
    section = readme_section()
    for rule, service in sorted(warned, key=str):
        assert f"`{rule} [{service}]`" in section, f"README.md does not explain {rule} [{service}]"


def test_the_readme_gives_the_warnings_own_numbers_and_a_fix_that_passes(
    real_compose: Path,
) -> None:
    warning = next(f for f in check(real_compose).findings if f.rule == "classifier-headroom")
    section = readme_section()
    band = re.search(r"conversations of ([\d,]+) to ([\d,]+) tokens", warning.message)
    assert band and f"{band[1]} to {band[2]} tokens" in section
    fixed = re.search(r"--max-model-len to (\d+)", warning.fix)
    assert fixed and f"vllm-primary.--max-model-len={fixed[1]}" in section
