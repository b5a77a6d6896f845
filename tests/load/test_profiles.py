"""The four load profiles, short, against the stack under test; each asserts its SLOs.

kv-pressure on the twin restarts the primary with its KV capacity below max-num-seqs full
contexts (`load.twin_kv_pressure_capacity`), so requests must wait for capacity, then restores it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from harness.load.runner import run_profile
from harness.load.slo import check_slos
from harness.stack.factory import parse_kv_overrides

pytestmark = [pytest.mark.load, pytest.mark.slow]


def duration(settings: Any, profile: str) -> float:
    return settings.get(f"load.test_duration_s.{profile}", float, 20.0)


def run(stack: Any, settings: Any, run_record: Any, profile: str, **kw: Any) -> dict[str, Any]:
    result = run_profile(
        stack,
        profile,
        stack.run_dir / "load",
        duration_s=duration(settings, profile),
        max_tokens=kw.pop("max_tokens", settings.get("load.max_tokens", int, 64)),
        **kw,
    )
    run_record.put("load", profile, result.summary)
    s = result.summary
    eng = s["engines"].get(stack.primary.name, {})
    print(
        f"{profile}: {s['requests']} requests, {s['failed']} failed; primary KV peak "
        f"{eng.get('kv_usage_peak')}, waiting max {eng.get('waiting_max')}, preemptions "
        f"{eng.get('preemptions')}; client overhead {s['client_overhead_ms']}"
    )
    assert s["requests"] > 0, f"{profile}: no request completed in the run"
    violations = check_slos(settings, s, stack.primary.name)
    assert not violations, "; ".join(violations)
    return s


@pytest.mark.parametrize("profile", ["steady", "saturate", "ramp"])
def test_chat_profiles(stack: Any, harness_settings: Any, run_record: Any, profile: str) -> None:
    s = run(stack, harness_settings, run_record, profile)
    assert s["latency"]["all"]["ttft_s"]["p95"] is not None
    assert {"local", "search"} & set(s["latency"]), "no request was labelled with its route"


@pytest.fixture
def pressured_primary(stack: Any, stack_backend: Any, harness_settings: Any) -> Iterator[None]:
    if stack.target != "twin":
        yield
        return
    capacity = harness_settings.get("load.twin_kv_pressure_capacity", str, "1.5x")
    original = dict(stack_backend.kv_overrides)
    stack_backend.kv_overrides = {
        **original,
        **parse_kv_overrides([f"primary={capacity}"], stack.spec),
    }
    stack_backend.restart(stack.primary.name)
    try:
        yield
    finally:
        stack_backend.kv_overrides = original
        stack_backend.restart(stack.primary.name)


def test_kv_pressure(
    stack: Any, harness_settings: Any, run_record: Any, pressured_primary: None
) -> None:
    run(
        stack,
        harness_settings,
        run_record,
        "kv-pressure",
        max_tokens=harness_settings.get("load.kv_pressure_max_tokens", int, 256),
        context_fraction=harness_settings.get("load.context_fraction", float, 0.65),
    )
    timeline = stack.run_dir / "load" / "kv-pressure" / "timeline.jsonl"
    assert timeline.is_file() and timeline.stat().st_size > 0
