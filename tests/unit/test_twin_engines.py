"""The twin's engine flags: mapped from the compose file, KV capacity from the VRAM model."""

from __future__ import annotations

import json
from pathlib import Path

from harness.config import Settings
from harness.stack.factory import parse_kv_overrides
from harness.stack.kv_line import parse_kv_line
from harness.twin.engines import CPU_BLOCK_SIZE, process_argv, twin_engine
from harness.vram.check import run_check


def tiny_model(tmp_path: Path) -> Path:
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "num_key_value_heads": 2,
                "hidden_size": 128,
                "head_dim": 64,
                "vocab_size": 1024,
                "torch_dtype": "float32",
            }
        )
    )
    return tmp_path


def flag(argv: tuple[str, ...], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_twin_primary_keeps_the_stack_flags_and_gets_the_predicted_capacity(
    real_compose: Path, tmp_path: Path
) -> None:
    result = run_check(real_compose, Settings(path=None, environ={}))
    svc = result.spec.primary
    assert svc.engine is not None
    predicted = result.plan.engine(svc.name).kv_capacity_tokens
    eng = twin_engine(svc.name, svc.command, tiny_model(tmp_path), kv_tokens=predicted)
    argv = process_argv(eng, 1234)
    assert flag(argv, "--max-model-len") == "32768"
    assert flag(argv, "--max-num-seqs") == "3"
    assert flag(argv, "--served-model-name") == "primary"
    assert flag(argv, "--reasoning-parser") == "qwen3"
    assert flag(argv, "--host") == "127.0.0.1" and flag(argv, "--port") == "1234"
    assert argv.count("--port") == 1
    assert "--gpu-memory-utilization" not in argv
    blocks = int(flag(argv, "--num-gpu-blocks-override"))
    assert 0 <= blocks * CPU_BLOCK_SIZE - predicted < CPU_BLOCK_SIZE
    assert flag(argv, "--kv-cache-dtype") == "auto"
    assert any(n.startswith("substitution kv-dtype: vllm-primary: fp8 -> auto") for n in eng.notes)
    # Uncompiled, float32, the worker in the engine core: each one named.
    assert flag(argv, "--optimization-level") == "0" and flag(argv, "--dtype") == "float32"
    assert eng.env["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    assert {"compile", "dtype", "executor"} <= {s.name for s in eng.substitutions}


def test_what_if_override_of_one_and_a_half_contexts(real_compose: Path) -> None:
    spec = run_check(real_compose, Settings(path=None, environ={})).spec
    assert parse_kv_overrides(["primary=1.5x"], spec) == {"primary": 49152}
    assert parse_kv_overrides(["vllm-router=65,536"], spec) == {"vllm-router": 65536}


def test_kv_line_parses_the_vllm_format() -> None:
    log = (
        "INFO 11-26 [kv_cache_utils.py:1087] CPU KV cache size: 49,152 tokens, Maximum "
        "concurrency for 32,768 tokens per request: 1.50x\nINFO other line\n"
    )
    kv = parse_kv_line(log)
    assert kv is not None
    assert (kv.device, kv.tokens, kv.max_model_len, kv.max_concurrency) == (
        "CPU",
        49152,
        32768,
        1.5,
    )
    assert parse_kv_line("nothing here") is None
