"""The engines as deployed: context consistency and KV capacity against the VRAM model."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from harness.telemetry.prom import scrape


def served_max_model_len(url: str) -> int:
    cards = httpx.get(url + "/v1/models", timeout=10).json()["data"]
    return int(cards[0]["max_model_len"])


def test_max_model_len_matches_compose_and_each_other(stack: Any, run_record: Any) -> None:
    seen = {}
    for svc in stack.engines:
        declared = stack.spec.services[svc.name].engine.max_model_len
        seen[svc.name] = served_max_model_len(svc.url)
        assert seen[svc.name] == declared, (
            f"{svc.name} serves max_model_len {seen[svc.name]}, the compose file says {declared}"
        )
    run_record.put("acceptance", "max_model_len", seen)
    assert len(set(seen.values())) == 1, (
        f"engines serve different max_model_len {seen}: the classifier must see whole "
        "conversations the primary accepts"
    )


def test_kv_capacity_holds_full_contexts(
    stack: Any, run_record: Any, harness_settings: Any, harness_target: str
) -> None:
    from harness.check import run_check

    plan = run_check(stack.spec.path, harness_settings).plan
    report = {}
    short = []
    for svc in stack.engines:
        engine = stack.spec.services[svc.name].engine
        cache = scrape(svc.url).cache_config()
        assert svc.kv is not None, f"{svc.name}: no KV cache line in its startup log"
        tokens = svc.kv.tokens
        concurrency = tokens / engine.max_model_len
        predicted = plan.engine(svc.name).kv_capacity_tokens
        error_pct = 100.0 * (tokens - predicted) / predicted if predicted else None
        report[svc.name] = {
            "log_tokens": tokens,
            "log_max_concurrency": svc.kv.max_concurrency,
            "cache_config_info": cache,
            "predicted_tokens": predicted,
            "prediction_error_pct": None if error_pct is None else round(error_pct, 2),
        }
        print(
            f"{svc.name}: KV {tokens:,} tokens ({svc.kv.max_concurrency:.2f}x), predicted "
            f"{predicted:,} ({error_pct:+.2f}%)"
        )
        assert tokens >= engine.max_model_len, (
            f"{svc.name}: KV cache holds {tokens:,} tokens, less than one {engine.max_model_len:,}"
            "-token sequence"
        )
        if concurrency < engine.max_num_seqs:
            short.append(
                f"{svc.name} holds {concurrency:.2f} of {engine.max_num_seqs} full contexts"
            )
    run_record.put("acceptance", "kv_capacity", report)
    if short and harness_settings.get(f"targets.{harness_target}.require_full_kv", bool, False):
        pytest.fail("; ".join(short))
    for line in short:
        print(f"report: {line}; requests will queue at full context")
