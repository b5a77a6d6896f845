"""Every preflight rule, each against a compose file broken in exactly that way."""

from __future__ import annotations

from pathlib import Path

import pytest
from compose_helpers import set_flag

from harness.config import Settings
from harness.vram.check import run_check
from harness.vram.rules import RULES, Severity


def check(path: Path, **overrides: object):
    return run_check(path, Settings(path=None, overrides=overrides, environ={}))


def rules_hit(result) -> dict[str, Severity]:
    return {f.rule: f.severity for f in result.findings}


def test_default_stack_passes_with_no_findings(real_compose: Path) -> None:
    result = check(real_compose)
    assert result.ok
    assert result.findings == ()


def test_utilization_sum_030_plus_065(compose_variant) -> None:
    path = compose_variant(lambda d: set_flag(d, "vllm-router", "--gpu-memory-utilization", "0.30"))
    result = check(path)
    assert rules_hit(result)["utilization-sum"] is Severity.ERROR
    assert "0.95" in next(f.message for f in result.findings if f.rule == "utilization-sum")


def test_router_with_shorter_context(compose_variant) -> None:
    path = compose_variant(lambda d: set_flag(d, "vllm-router", "--max-model-len", "8192"))
    result = check(path)
    assert rules_hit(result)["max-model-len-equal"] is Severity.ERROR
    msg = next(f.message for f in result.findings if f.rule == "max-model-len-equal")
    assert "vllm-router=8192" in msg and "vllm-primary=32768" in msg


def test_kv_pool_too_small_for_one_sequence(compose_variant) -> None:
    path = compose_variant(
        lambda d: set_flag(d, "vllm-primary", "--gpu-memory-utilization", "0.36")
    )
    result = check(path)
    f = next(f for f in result.findings if f.rule == "kv-holds-one-sequence")
    assert f.severity is Severity.ERROR and f.service == "vllm-primary"
    assert "fewer than one 32,768-token sequence" in f.message


def test_weights_larger_than_the_budget(compose_variant) -> None:
    path = compose_variant(lambda d: set_flag(d, "vllm-primary", "--gpu-memory-utilization", "0.2"))
    f = next(f for f in check(path).findings if f.rule == "kv-holds-one-sequence")
    assert "leave no KV pool" in f.message


def test_kv_pool_below_max_num_seqs_full_contexts_warns(compose_variant) -> None:
    path = compose_variant(
        lambda d: set_flag(d, "vllm-primary", "--gpu-memory-utilization", "0.45")
    )
    result = check(path)
    assert result.ok
    f = next(f for f in result.findings if f.rule == "kv-holds-max-num-seqs")
    assert f.severity is Severity.WARNING
    assert "only 2 of --max-num-seqs 3" in f.message


def test_budgets_plus_contexts_must_fit_the_card(compose_variant) -> None:
    def both_half(d):
        set_flag(d, "vllm-router", "--gpu-memory-utilization", "0.5")
        set_flag(d, "vllm-primary", "--gpu-memory-utilization", "0.5")

    result = check(compose_variant(both_half), **{"check.utilization_limit": 1.0})
    assert rules_hit(result)["fits-card"] is Severity.ERROR


def test_context_longer_than_the_model_supports(compose_variant) -> None:
    path = compose_variant(lambda d: set_flag(d, "vllm-router", "--max-model-len", "65536"))
    assert rules_hit(check(path))["max-model-len-within-model"] is Severity.ERROR


def test_latest_image_warns(compose_variant) -> None:
    path = compose_variant(lambda d: d["services"]["traefik"].update(image="traefik"))
    assert rules_hit(check(path))["image-latest"] is Severity.WARNING


@pytest.mark.parametrize("port", ["8001:8000", "0.0.0.0:8001:8000"])
def test_engine_port_beyond_loopback(compose_variant, port: str) -> None:
    path = compose_variant(lambda d: d["services"]["vllm-router"].update(ports=[port]))
    f = next(f for f in check(path).findings if f.rule == "engine-port-public")
    assert f.severity is Severity.ERROR and "127.0.0.1:8001:8000" in f.fix


def test_inline_secret(compose_variant) -> None:
    def plant(d):
        d["services"]["ai-router"]["environment"]["XAI_API_KEY"] = "xai-planted-value"

    result = check(compose_variant(plant))
    f = next(f for f in result.findings if f.rule == "inline-secret")
    assert f.severity is Severity.ERROR and "XAI_API_KEY" in f.message
    assert all("planted" not in (x.message + x.fix) for x in result.findings)


def test_every_rule_has_a_test_here() -> None:
    tested = {
        "utilization-sum",
        "max-model-len-equal",
        "max-model-len-within-model",
        "kv-holds-one-sequence",
        "kv-holds-max-num-seqs",
        "fits-card",
        "image-latest",
        "engine-port-public",
        "inline-secret",
    }
    assert set(RULES) == tested
