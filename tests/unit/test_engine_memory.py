"""vLLM's startup memory breakdown, and the per-engine activation reserve it calibrates."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import Settings, load_settings
from harness.errors import ConfigError
from harness.stack.engine_memory import parse_memory_breakdown, parse_model_loading_gib
from harness.units import GIB
from harness.vram.check import run_check

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "(EngineCore_DP0 pid=311) INFO 11-29 22:01:12 [gpu_worker.py:1031] "
# The f-string of vLLM 0.32's gpu_worker.py, with a primary's figures (62.14 - 31.9 - 2.05
# = 28.19 GiB of KV).
V032 = (
    "Free memory on device (94.47/95.59 GiB) on startup. Desired GPU memory utilization is "
    "(0.65, 62.14 GiB). Actual usage is 31.9 GiB for consumed memory (weights + non-torch), "
    "2.05 GiB for peak activation, and 0.11 GiB for CUDAGraph memory. Replace "
    "gpu_memory_utilization config with `--kv-cache-memory=29989609144` (27.93 GiB) to fit "
    "into requested memory, or `--kv-cache-memory=64703682314` (60.26 GiB) to fully utilize "
    "gpu memory. Current kv cache memory in use is 28.19 GiB."
)
# The v0.11-era wording: weights and non-torch memory apart.
V011 = (
    "Free memory on device (78.9/79.19 GiB) on startup. Desired GPU memory utilization is "
    "(0.14, 11.09 GiB). Actual usage is 5.79 GiB for weight, 0.52 GiB for peak activation, "
    "0.21 GiB for non-torch memory, and 0.05 GiB for CUDAGraph memory. Replace "
    "gpu_memory_utilization config with `--kv-cache-memory=4563402752` (4.25 GiB) to fit into "
    "requested memory, or `--kv-cache-memory=76398235648` (71.15 GiB) to fully utilize gpu "
    "memory. Current kv cache memory in use is 4.57 GiB."
)


def test_the_vllm_0_32_breakdown() -> None:
    log = (
        "INFO [gpu_model_runner.py:5150] Model loading took 30.98 GiB memory and 9.1 seconds\n"
        + PREFIX
        + V032
        + "\nINFO [core.py:210] init engine (profile, create kv cache, warmup model) took 41 s\n"
    )
    m = parse_memory_breakdown(log)
    assert m is not None
    assert (m.free_gib, m.total_gib, m.utilization, m.requested_gib) == (94.47, 95.59, 0.65, 62.14)
    assert (m.consumed_gib, m.peak_activation_gib, m.cuda_graph_gib, m.kv_cache_gib) == (
        31.9,
        2.05,
        0.11,
        28.19,
    )
    assert (m.weights_gib, m.non_torch_gib, m.model_loading_gib) == (None, None, 30.98)
    # budget - weights - KV: what check.activation_reserve stands for on this engine.
    assert m.reserve_gib == pytest.approx(62.14 - 30.98 - 28.19, abs=0.005)
    assert m.text == PREFIX.strip() + " " + V032
    assert m.to_dict()["reserve_gib"] == m.reserve_gib


def test_the_v0_11_breakdown_with_weights_apart() -> None:
    m = parse_memory_breakdown(V011)
    assert m is not None
    assert (m.weights_gib, m.non_torch_gib, m.peak_activation_gib) == (5.79, 0.21, 0.52)
    assert m.consumed_gib == 6.0
    assert m.kv_cache_gib == 4.57
    assert m.reserve_gib == pytest.approx(11.09 - 5.79 - 4.57, abs=0.005)


def test_older_and_cut_forms() -> None:
    oldest = V011.replace(" Desired GPU memory utilization is (0.14, 11.09 GiB).", "")
    m = parse_memory_breakdown(oldest)
    assert m is not None and (m.utilization, m.requested_gib, m.reserve_gib) == (None, None, None)
    cut = parse_memory_breakdown(V032.split(" Replace")[0])
    assert cut is not None and cut.kv_cache_gib is None and cut.cuda_graph_gib == 0.11
    # The refusal to start shares the opening words and is no breakdown.
    refusal = (
        "ValueError: Free memory on device cuda:0 (10.2/95.59 GiB) on startup is less than "
        "desired GPU memory utilization (0.65, 62.14 GiB)."
    )
    assert parse_memory_breakdown(refusal) is None
    assert parse_memory_breakdown("nothing") is None


def test_the_last_breakdown_wins() -> None:
    restarted = V011 + "\n" + V032 + "\n"
    m = parse_memory_breakdown(restarted)
    assert m is not None and m.kv_cache_gib == 28.19


def test_model_loading_in_both_wordings() -> None:
    assert parse_model_loading_gib("Model loading took 5.79 GiB memory and 3.2 seconds") == 5.79
    assert parse_model_loading_gib("Model loading took 5.7912 GiB and 3.200000 seconds") == 5.7912
    assert parse_model_loading_gib("Loading weights took 3.1 seconds") is None


def _settings(**overrides: str) -> Settings:
    return load_settings(ROOT / "harness.toml", overrides=overrides)


def test_one_reserve_for_both_engines_by_default() -> None:
    plan = run_check(ROOT / "infra/docker-compose.yml", _settings()).plan
    assert {e.service: e.activation_reserve_bytes for e in plan.engines} == {
        "vllm-router": 2 * GIB,
        "vllm-primary": 2 * GIB,
    }


def test_a_reserve_for_one_engine() -> None:
    compose = ROOT / "infra/docker-compose.yml"
    before = run_check(compose, _settings()).plan
    after = run_check(
        compose, _settings(**{"check.activation_reserve_by_service.vllm-router": "1GiB"})
    ).plan
    router, primary = after.engine("vllm-router"), after.engine("vllm-primary")
    assert router.activation_reserve_bytes == GIB
    assert router.kv_pool_bytes == before.engine("vllm-router").kv_pool_bytes + GIB
    assert router.kv_capacity_tokens > before.engine("vllm-router").kv_capacity_tokens
    assert primary == before.engine("vllm-primary")


def test_the_reserve_table_and_its_environment_names(tmp_path: Path) -> None:
    compose = ROOT / "infra/docker-compose.yml"
    toml = tmp_path / "harness.toml"
    toml.write_text('[check.activation_reserve_by_service]\nvllm-primary = "3GiB"\n')
    from_file = load_settings(toml)
    assert run_check(compose, from_file).plan.engine("vllm-primary").activation_reserve_bytes == (
        3 * GIB
    )
    env = {"HARNESS_CHECK_ACTIVATION_RESERVE_BY_SERVICE_VLLM_ROUTER": "1.5GiB"}
    from_env = Settings(path=None, environ=env)
    assert run_check(compose, from_env).plan.engine("vllm-router").activation_reserve_bytes == (
        int(1.5 * GIB)
    )


def test_a_misspelt_engine_in_the_reserve_table_is_an_error() -> None:
    typo = Settings(
        path=None,
        data={"check": {"activation_reserve_by_service": {"vllm-routr": "1GiB"}}},
        environ={},
    )
    with pytest.raises(ConfigError, match="vllm-routr"):
        run_check(ROOT / "infra/docker-compose.yml", typo)
