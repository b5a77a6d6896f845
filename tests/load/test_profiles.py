"""The four load profiles, short, against the stack under test; each asserts its SLOs
(`[slo.<profile>]`, with `[slo.<profile>.<target>]` on top) and fails when every request
through the router fell back to the default route.

kv-pressure depends on the primary's KV pool:
- twin: the primary restarts with its KV capacity below max-num-seqs full contexts
  (`load.twin_kv_pressure_capacity`), max-num-seqs users, so requests must wait for KV blocks
  (min_kv_peak, min_waiting_capacity); the pool is restored afterwards.
- gpu, attach (and twin-docker, whose container backend cannot restart the primary with
  another pool): the pool holds every slot's sequence, so KV pressure cannot happen. The run
  asserts the KV model instead: the peak is about max-num-seqs x (prompt + output) / capacity
  (kv_peak_tolerance), and with max-num-seqs + 1 users one request waits for a slot
  (min_waiting), with no preemption.
Either way the profile sends at least 2 x max-num-seqs requests.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from harness.load.runner import run_profile
from harness.load.slo import check_slos, slo_table
from harness.stack.factory import parse_kv_overrides

pytestmark = [pytest.mark.load, pytest.mark.slow]


def duration(settings: Any, profile: str) -> float:
    return settings.get(f"load.test_duration_s.{profile}", float, 20.0)


def run(stack: Any, settings: Any, run_record: Any, profile: str, **kw: Any) -> dict[str, Any]:
    # A typo in [slo.*] or HARNESS_SLO_* fails here, before minutes of load.
    table = slo_table(settings, profile, stack.target)
    result = run_profile(
        stack,
        profile,
        stack.run_dir / "load",
        duration_s=duration(settings, profile),
        max_tokens=kw.pop("max_tokens", settings.get("load.max_tokens", int, 64)),
        slo=table,
        **kw,
    )
    run_record.put("load", profile, result.summary)
    s = result.summary
    eng = s["engines"].get(stack.primary.name, {})
    rec = s["reconciliation"].get(stack.primary.name, {})
    print(
        f"{profile}: {s['requests']} requests, {s['failed']} failed; primary KV peak "
        f"{eng.get('kv_usage_peak')}, waiting max {eng.get('waiting_max')}, preemptions "
        f"{eng.get('preemptions')}; client - engine TTFT mean {rec.get('ttft_mean_diff_ms')} ms, "
        f"reconciliation problems {rec.get('problems')}; route reasons "
        f"{s['route_reasons']}; /metrics scrape errors {s['scrape_errors']}; KV pool "
        f"{s['kv_pool']}"
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
def pressured_primary(
    stack: Any, stack_backend: Any, harness_settings: Any, primary_pool: Any
) -> Iterator[bool]:
    """True while the primary runs with a KV pool below max-num-seqs full contexts.

    After its restart the primary must log the capacity asked for, in whole CPU blocks, and the
    concurrency that follows (1.5x for 49,152 tokens of 32,768). The restore to the predicted
    pool is left to the next test that needs it (primary_pool)."""
    if stack.target != "twin":
        yield False
        return
    capacity = harness_settings.get("load.twin_kv_pressure_capacity", str, "1.5x")
    original = dict(stack_backend.kv_overrides)
    shrunk = parse_kv_overrides([f"primary={capacity}"], stack.spec)
    stack_backend.kv_overrides = {**original, **shrunk}
    handle = stack_backend.restart(stack.primary.name)
    try:
        (tokens,) = shrunk.values()
        primary_pool.check_kv(handle, tokens, stack.spec.primary.engine.max_model_len)
        print(f"kv-pressure primary: {handle.kv.text}")
        yield True
    finally:
        stack_backend.kv_overrides = original
        primary_pool.restore_later(stack_backend, stack.primary.name)


# The keys each kind of pool must be judged by: a table that lost them would pass unjudged.
PRESSURED_KEYS = {"min_kv_peak", "min_waiting_capacity"}
KV_MODEL_KEYS = {"kv_peak_tolerance", "min_waiting", "max_preemptions"}


def test_kv_pressure(
    stack: Any, harness_settings: Any, run_record: Any, pressured_primary: bool
) -> None:
    table = slo_table(harness_settings, "kv-pressure", stack.target)
    need = PRESSURED_KEYS if pressured_primary else KV_MODEL_KEYS
    assert need <= set(table.keys), (
        f"[slo.kv-pressure.{stack.target}] lacks {sorted(need - set(table.keys))}: on this "
        f"target kv-pressure is judged by {sorted(need)}"
    )
    s = run(
        stack,
        harness_settings,
        run_record,
        "kv-pressure",
        max_tokens=harness_settings.get(
            f"load.{'twin_' if pressured_primary else ''}kv_pressure_max_tokens", int, 64
        ),
        context_fraction=harness_settings.get("load.context_fraction", float, 0.65),
    )
    seqs = stack.spec.primary.engine.max_num_seqs
    users = s["settings"]["users"]
    assert users == (seqs if pressured_primary else seqs + 1), (
        f"kv-pressure ran {users} users against --max-num-seqs {seqs} with a "
        f"{'shrunk' if pressured_primary else 'full'} KV pool ({s['kv_pool']})"
    )
    assert s["requests"] >= 2 * seqs, f"only {s['requests']} requests, expected >= {2 * seqs}"
    timeline = stack.run_dir / "load" / "kv-pressure" / "timeline.jsonl"
    assert timeline.is_file() and timeline.stat().st_size > 0
