"""`harness check`'s advice agrees with itself: each suggested fix, applied, gives no new error,
and the error and the warning of one mismatch point the same way."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compose_helpers import set_flag

from harness.compose import StackSpec
from harness.config import Settings
from harness.routing.headroom import Headroom
from harness.vram.check import CheckResult, run_check
from harness.vram.rules import Severity

Variant = Callable[[Callable[[dict[str, Any]], None]], Path]


def measured(spec: StackSpec) -> Headroom:
    """The reference router's overhead as the twin's tokenizer measures it (170 + 5)."""
    clf, pri = spec.classifier, spec.primary
    assert clf.engine is not None and pri.engine is not None
    return Headroom(
        classifier=clf.name, primary=pri.name,
        classifier_max_model_len=clf.engine.max_model_len or 32768,
        primary_max_model_len=pri.engine.max_model_len or 32768,
        prompt_overhead=170, label_budget=5, source="test",
    )  # fmt: skip


def check(path: Path) -> CheckResult:
    return run_check(path, Settings(path=None, environ={}), headroom=measured)


def errors(result: CheckResult) -> set[str]:
    return {f.rule for f in result.findings if f.severity is Severity.ERROR}


def apply_fix(fix: str, variant: Variant) -> Path:
    """The first `raise|lower SERVICE --flag to N` of a fix, applied to the compose file."""
    m = re.search(r"(?:raise|lower) (\S+) (--[\w-]+) to (\d+)", fix)
    assert m, f"no applicable number in the fix: {fix}"
    service, flag, value = m.groups()
    return variant(lambda d: set_flag(d, service, flag, value))


def test_the_headroom_warnings_fix_gives_no_error_and_no_warning(
    real_compose: Path, compose_variant: Variant
) -> None:
    first = check(real_compose)
    warning = next(f for f in first.findings if f.rule == "classifier-headroom")
    assert "lower vllm-primary --max-model-len to 32594" in warning.fix
    after = check(apply_fix(warning.fix, compose_variant))
    assert errors(after) == set()
    assert not [f for f in after.findings if f.rule == "classifier-headroom"]


def test_a_shorter_classifier_error_and_the_warning_point_the_same_way(
    compose_variant: Variant, tmp_path: Path
) -> None:
    short = compose_variant(lambda d: set_flag(d, "vllm-router", "--max-model-len", "8192"))
    result = check(short)
    error = next(f for f in result.findings if f.rule == "max-model-len-equal")
    assert "classifier is shorter" in error.message and "same" not in error.fix
    assert "raise vllm-router --max-model-len to 32768" in error.fix
    warning = next(f for f in result.findings if f.rule == "classifier-headroom")
    # Neither asks for what the other forbids: both close the gap from the primary's side or
    # lift the classifier to at least the primary's length, never below it.
    assert "above the primary" not in warning.fix and "lower vllm-primary" in warning.fix
    for fix in (error.fix, warning.fix):
        assert errors(check(apply_fix(fix, compose_variant))) == set()


def test_a_longer_classifier_is_no_max_model_len_error(compose_variant: Variant) -> None:
    longer = compose_variant(lambda d: set_flag(d, "vllm-primary", "--max-model-len", "16384"))
    assert "max-model-len-equal" not in errors(check(longer))
