"""soak: saturate's load held for 10 minutes; nothing may leak beyond [slo.soak]'s bounds.

Opt-in (`--harness-soak`, or `harness load soak`): it reports the error rate, and the growth of
the router's and the harness's resident memory and open files after the warm-up minute.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.load.runner import run_profile
from harness.load.slo import check_slos

# Skipped before its fixtures run: an opt-in test that is not run starts nothing (not even a
# pending restore of the primary's pool).
pytestmark = [
    pytest.mark.load,
    pytest.mark.slow,
    pytest.mark.timeout(3600),
    pytest.mark.skipif(
        "not config.getoption('--harness-soak')",
        reason="opt-in, 10 minutes at saturate load: pass --harness-soak",
    ),
]


def test_soak_holds_without_leaks(stack: Any, harness_settings: Any, run_record: Any) -> None:
    duration = harness_settings.typed.load.test_duration_s["soak"]
    result = run_profile(
        stack,
        "soak",
        stack.run_dir / "load",
        duration_s=duration,
        max_tokens=harness_settings.typed.load.max_tokens,
        warmup_s=harness_settings.typed.load.soak_warmup_s,
    )
    s = result.summary
    run_record.put("load", "soak", s)
    resources = s["resources"]
    print(f"\nsoak {duration:.0f} s: {s['requests']} requests, error rate {s['error_rate']:.2%}")
    for group, r in resources.items():
        print(f"  {group}: {r}")
    assert s["requests"] > 0, "no request completed during the soak"
    assert "harness" in resources, resources
    if stack.target == "twin":
        assert "router" in resources and resources["router"]["processes_end"] > 0, resources
    violations = check_slos(harness_settings, s, stack.primary.name)
    assert not violations, "; ".join(violations)
