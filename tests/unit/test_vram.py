from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.compose import parse_engine_args
from harness.errors import InputError
from harness.units import GIB, MIB, parse_size
from harness.vram.arch import CATALOG, resolve_arch
from harness.vram.plan import (
    MemoryAssumptions,
    budget_bytes,
    engine_memory,
    kv_bytes_per_token,
    kv_capacity,
    max_concurrency,
)

LLAMA3_8B = CATALOG["meta-llama/Meta-Llama-3-8B-Instruct"]


def test_llama3_8b_stores_128_kib_per_token_in_bf16() -> None:
    # 2 x 32 layers x 8 KV heads x 128 head_dim x 2 bytes, the widely published figure.
    assert kv_bytes_per_token(LLAMA3_8B, "auto") == 128 * 1024
    assert kv_bytes_per_token(LLAMA3_8B, "bfloat16") == 128 * 1024
    assert kv_bytes_per_token(LLAMA3_8B, "fp8") == 64 * 1024


def test_llama3_70b_and_qwen_figures() -> None:
    assert kv_bytes_per_token(CATALOG["meta-llama/Llama-3.1-70B-Instruct"], "auto") == 320 * 1024
    assert kv_bytes_per_token(CATALOG["Qwen/Qwen2.5-3B-Instruct"], "fp8") == 18_432
    assert kv_bytes_per_token(CATALOG["Qwen/Qwen3-32B-FP8"], "fp8") == 131_072


def test_weights_are_quantization_aware() -> None:
    bf16 = CATALOG["Qwen/Qwen3-32B"].weight_bytes
    fp8 = CATALOG["Qwen/Qwen3-32B-FP8"].weight_bytes
    assert bf16 == 32_762_123_264 * 2
    # Linear layers at 1 byte, embeddings and LM head kept at 2 bytes.
    assert 0.5 * bf16 < fp8 < 0.56 * bf16
    assert LLAMA3_8B.weight_bytes == 8_030_261_248 * 2


def test_budget_is_a_fraction_of_total_rounded_up() -> None:
    assert budget_bytes(96 * GIB, 0.14) == -(-96 * GIB * 14 // 100)
    assert budget_bytes(1000, 0.333) == 333


def test_capacity_counts_whole_blocks_and_concurrency_matches_vllm() -> None:
    per_token = 1000
    assert kv_capacity(16_999 * per_token, per_token, 16) == 16_992
    assert kv_capacity(-5, per_token, 16) == 0
    # vllm-facts: "CPU KV cache size: 49,152 tokens, ... 32,768 tokens per request: 1.50x"
    assert max_concurrency(49_152, 32_768, 128) == 1.5


def test_engine_memory_pool_is_budget_minus_weights_minus_reserve() -> None:
    args = parse_engine_args(
        [
            "meta-llama/Meta-Llama-3-8B-Instruct",
            "--gpu-memory-utilization",
            "0.5",
            "--max-model-len",
            "8192",
            "--max-num-seqs",
            "4",
        ],
        where="t",
    )
    a = MemoryAssumptions(total_bytes=80 * GIB, activation_reserve_bytes=GIB, block_size=16)
    m = engine_memory("e", args, LLAMA3_8B, a)
    assert m.budget_bytes == 40 * GIB
    assert m.kv_pool_bytes == 40 * GIB - LLAMA3_8B.weight_bytes - GIB
    assert m.kv_capacity_tokens == (m.kv_pool_bytes // (128 * 1024 * 16)) * 16
    assert m.max_concurrency_at_max_model_len == pytest.approx(m.kv_capacity_tokens / 8192, 1e-3)
    assert m.full_sequences == int(m.kv_capacity_tokens / 8192)


def test_arch_from_local_config_and_safetensors_index(tmp_path: Path) -> None:
    cfg = {
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "hidden_size": 128,
        "head_dim": 64,
        "vocab_size": 1024,
        "torch_dtype": "float32",
        "max_position_embeddings": 40960,
    }
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 123_456}})
    )
    arch = resolve_arch(str(tmp_path))
    assert (arch.num_layers, arch.num_kv_heads, arch.head_dim, arch.dtype_bytes) == (2, 1, 64, 4)
    assert arch.weight_bytes == 123_456
    assert kv_bytes_per_token(arch, "auto") == 2 * 2 * 1 * 64 * 4


def test_arch_from_the_hf_cache_layout_offline(tmp_path: Path) -> None:
    snap = tmp_path / "hub" / "models--acme--tiny" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (tmp_path / "hub" / "models--acme--tiny" / "refs").mkdir()
    (tmp_path / "hub" / "models--acme--tiny" / "refs" / "main").write_text("abc123")
    (snap / "config.json").write_text(
        json.dumps(
            {
                "num_hidden_layers": 4,
                "num_attention_heads": 8,
                "hidden_size": 512,
                "vocab_size": 1000,
                "quantization_config": {"quant_method": "fp8"},
            }
        )
    )
    arch = resolve_arch("acme/tiny", hf_home=str(tmp_path))
    assert arch.num_kv_heads == 8 and arch.head_dim == 64 and arch.quant_bytes == 1.0
    assert arch.source.endswith("config.json")


def test_unknown_model_is_an_input_error() -> None:
    with pytest.raises(InputError, match=r"'acme/absent': no config\.json"):
        resolve_arch("acme/absent", hf_home="/nonexistent")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("96GiB", 96 * GIB),
        ("80GB", 80 * 10**9),
        ("81559MiB", 81559 * MIB),
        ("1024", 1024),
        ("0.5 G", GIB // 2),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


def test_parse_size_rejects_nonsense() -> None:
    with pytest.raises(InputError, match="gpu_memory: cannot read 'lots'"):
        parse_size("lots", what="gpu_memory")
