from __future__ import annotations

import pytest

from harness.compose import parse_engine_args
from harness.errors import SpecError

WHERE = "docker-compose.yml: service 'vllm-router'"


def test_typed_fields_from_a_list_command() -> None:
    args = parse_engine_args(
        [
            "Qwen/Qwen2.5-3B-Instruct",
            "--served-model-name",
            "clf",
            "--gpu-memory-utilization",
            "0.14",
            "--max-model-len",
            "32768",
            "--max-num-seqs",
            "3",
            "--kv-cache-dtype",
            "fp8",
            "--reasoning-parser",
            "qwen3",
            "--block-size",
            "32",
        ],
        where=WHERE,
    )
    assert args.model == "Qwen/Qwen2.5-3B-Instruct"
    assert args.served_model_name == ("clf",)
    assert args.name == "clf"
    assert args.gpu_memory_utilization == 0.14
    assert (args.max_model_len, args.max_num_seqs, args.block_size) == (32768, 3, 32)
    assert args.kv_cache_dtype == "fp8" and args.kv_is_fp8
    assert args.reasoning_parser == "qwen3"


def test_string_command_equals_and_human_ints() -> None:
    args = parse_engine_args(
        "vllm serve m --max-model-len=32K --max-num-batched-tokens 8k --enforce-eager "
        "--tool-call-parser hermes --enable-auto-tool-choice",
        where=WHERE,
    )
    assert args.max_model_len == 32768
    assert args.max_num_batched_tokens == 8000
    assert args.extra == (
        ("--enforce-eager", None),
        ("--tool-call-parser", "hermes"),
        ("--enable-auto-tool-choice", None),
    )


def test_unknown_flags_are_kept_verbatim_and_round_trip() -> None:
    args = parse_engine_args(
        ["m", "--max-model-len", "4096", "--swap-space", "4", "--trust-remote-code"], where=WHERE
    )
    assert ("--swap-space", "4") in args.extra
    again = parse_engine_args(args.to_argv(), where=WHERE)
    assert again == args


@pytest.mark.parametrize(
    ("command", "needle"),
    [
        (["m", "--gpu-memory-utilization", "lots"], "--gpu-memory-utilization expects a number"),
        (["m", "--max-model-len", "long"], "--max-model-len expects an integer"),
        (["m", "--max-num-seqs", "3.5"], "--max-num-seqs expects an integer"),
        (["m", "--gpu-memory-utilization", "1.5"], "must be in (0, 1]"),
        (["m", "--kv-cache-dtype", "fp4"], "--kv-cache-dtype 'fp4' is not one of"),
        (["m", "--max-num-seqs", "0"], "--max-num-seqs must be positive"),
        (["m", "--max-model-len"], "--max-model-len needs a value"),
        (["m", "--max-num-seqs", "3", "--max-num-seqs", "4"], "--max-num-seqs is given twice"),
        (["--max-num-seqs", "3"], "names no model"),
        (["m", "stray"], "unexpected argument"),
        (["m", "--enable-auto-tool-choice"], "requires --tool-call-parser"),
    ],
)
def test_bad_flags_name_the_file_service_and_flag(command: list[str], needle: str) -> None:
    with pytest.raises(SpecError) as exc:
        parse_engine_args(command, where=WHERE)
    assert needle in str(exc.value)
    assert str(exc.value).startswith(WHERE)
