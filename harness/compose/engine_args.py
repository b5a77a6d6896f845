"""vLLM server flags, parsed from a compose `command:` into typed EngineArgs.

The `vllm/vllm-openai` image's entrypoint is `vllm serve`, so the command starts with the model.
Flags the harness reasons about get typed fields; every other flag is kept verbatim, in order,
so that a backend can pass it on unchanged.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from harness.errors import SpecError

# Flags that take no value. Anything else that is followed by a non-flag token takes it.
BOOLEAN_FLAGS = frozenset(
    {
        "--enforce-eager",
        "--trust-remote-code",
        "--enable-prefix-caching",
        "--no-enable-prefix-caching",
        "--enable-chunked-prefill",
        "--no-enable-chunked-prefill",
        "--enable-auto-tool-choice",
        "--disable-log-requests",
        "--enable-log-requests",
        "--disable-log-stats",
        "--disable-frontend-multiprocessing",
        "--disable-fastapi-docs",
        "--enable-prompt-tokens-details",
        "--headless",
        "--async-scheduling",
    }
)
# Flags that take one or more values (argparse nargs="+").
MULTI_VALUE_FLAGS = frozenset({"--served-model-name", "--api-key", "--middleware"})

_HUMAN_INT = re.compile(r"^([0-9]+)([kKmMgG]?)$")
_SUFFIX = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "K": 1024, "M": 1024**2, "G": 1024**3}

KV_DTYPE_BYTES = {
    "fp8": 1,
    "fp8_e4m3": 1,
    "fp8_e5m2": 1,
    "fp8_inc": 1,
    "fp8_ds_mla": 1,
    "bfloat16": 2,
    "float16": 2,
    "half": 2,
    "float32": 4,
    "float": 4,
}


@dataclass(frozen=True)
class EngineArgs:
    """The parsed `vllm serve` command of one engine."""

    model: str
    served_model_name: tuple[str, ...] = ()
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    max_num_seqs: int = 256
    kv_cache_dtype: str = "auto"
    block_size: int | None = None
    reasoning_parser: str | None = None
    dtype: str = "auto"
    quantization: str | None = None
    tensor_parallel_size: int = 1
    max_num_batched_tokens: int | None = None
    num_gpu_blocks_override: int | None = None
    kv_cache_memory_bytes: int | None = None
    port: int = 8000
    # Every flag not given a field above, verbatim: (flag, value or None for a boolean flag).
    extra: tuple[tuple[str, str | None], ...] = field(default=())

    @property
    def name(self) -> str:
        """The model name clients use: the first served name, else the model."""
        return self.served_model_name[0] if self.served_model_name else self.model

    @property
    def kv_is_fp8(self) -> bool:
        return self.kv_cache_dtype.startswith("fp8")

    def has_flag(self, flag: str) -> bool:
        return any(f == flag for f, _ in self.extra)

    def with_(self, **changes: object) -> EngineArgs:
        return replace(self, **changes)  # type: ignore[arg-type]

    def to_argv(self) -> list[str]:
        """The flags back as a `vllm serve` argument list, model first."""
        argv = [self.model]
        if self.served_model_name:
            argv += ["--served-model-name", *self.served_model_name]
        typed: list[tuple[str, object | None]] = [
            ("--gpu-memory-utilization", self.gpu_memory_utilization),
            ("--max-model-len", self.max_model_len),
            ("--max-num-seqs", self.max_num_seqs),
            ("--kv-cache-dtype", self.kv_cache_dtype),
            ("--block-size", self.block_size),
            ("--reasoning-parser", self.reasoning_parser),
            ("--dtype", self.dtype),
            ("--quantization", self.quantization),
            ("--tensor-parallel-size", self.tensor_parallel_size),
            ("--max-num-batched-tokens", self.max_num_batched_tokens),
            ("--num-gpu-blocks-override", self.num_gpu_blocks_override),
            ("--kv-cache-memory-bytes", self.kv_cache_memory_bytes),
            ("--port", self.port),
        ]
        for flag, value in typed:
            if value is not None:
                argv += [flag, str(value)]
        for flag, extra_value in self.extra:
            argv += [flag] if extra_value is None else [flag, extra_value]
        return argv


def parse_human_int(text: str, *, where: str, flag: str) -> int:
    """An integer as vLLM reads it: '32768', '32k' (x1000) or '32K' (x1024)."""
    m = _HUMAN_INT.match(text.strip())
    if not m:
        raise SpecError(f"{where}: {flag} expects an integer, got {text!r}")
    return int(m.group(1)) * _SUFFIX[m.group(2)]


def _float(text: str, *, where: str, flag: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise SpecError(f"{where}: {flag} expects a number, got {text!r}") from None


def _split_command(command: str | Sequence[str], where: str) -> list[str]:
    if isinstance(command, str):
        try:
            return shlex.split(command)
        except ValueError as exc:
            raise SpecError(f"{where}: command cannot be split: {exc}") from None
    if not isinstance(command, list | tuple) or not all(
        isinstance(t, str | int | float) and not isinstance(t, bool) for t in command
    ):
        raise SpecError(f"{where}: command must be a string or a list of strings")
    return [str(t) for t in command]


def split_flags(tokens: list[str], where: str) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Split argv into positionals and (flag, values) pairs; `--flag=value` is one token."""
    positionals: list[str] = []
    pairs: list[tuple[str, list[str]]] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--"):
            positionals.append(tok)
            i += 1
            continue
        if "=" in tok:
            flag, value = tok.split("=", 1)
            pairs.append((flag, [value]))
            i += 1
            continue
        values: list[str] = []
        i += 1
        if tok not in BOOLEAN_FLAGS:
            while i < len(tokens) and not tokens[i].startswith("--"):
                values.append(tokens[i])
                i += 1
                if tok not in MULTI_VALUE_FLAGS:
                    break
        pairs.append((tok, values))
    return positionals, pairs


def parse_engine_args(command: str | Sequence[str], *, where: str) -> EngineArgs:
    """Parse a `vllm serve` command (without the `vllm serve` words) into EngineArgs.

    `where` names the file and service in every error message.
    """
    tokens = _split_command(command, where)
    if tokens[:2] == ["vllm", "serve"]:
        tokens = tokens[2:]
    elif tokens[:1] == ["serve"]:
        tokens = tokens[1:]
    positionals, pairs = split_flags(tokens, where)

    fields: dict[str, object] = {}
    extra: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    for flag, values in pairs:
        if flag in seen and flag not in ("--middleware",):
            raise SpecError(f"{where}: {flag} is given twice")
        seen.add(flag)
        value = values[0] if values else None
        needs_value = flag not in BOOLEAN_FLAGS
        if needs_value and value is None and flag in _TYPED:
            raise SpecError(f"{where}: {flag} needs a value")
        if flag == "--model":
            fields["model"] = value
        elif flag == "--served-model-name":
            fields["served_model_name"] = tuple(values)
        elif flag in _TYPED:
            attr, kind = _TYPED[flag]
            assert value is not None
            if kind is int:
                fields[attr] = parse_human_int(value, where=where, flag=flag)
            elif kind is float:
                fields[attr] = _float(value, where=where, flag=flag)
            else:
                fields[attr] = value
        elif len(values) > 1:
            extra.extend((flag, v) for v in values)
        else:
            extra.append((flag, value))

    if "model" not in fields:
        if not positionals:
            raise SpecError(f"{where}: the vLLM command names no model (first argument or --model)")
        fields["model"] = positionals[0]
        positionals = positionals[1:]
    if positionals:
        raise SpecError(f"{where}: unexpected argument(s) {positionals!r} in the vLLM command")

    args = EngineArgs(extra=tuple(extra), **fields)  # type: ignore[arg-type]
    _validate(args, where)
    return args


_TYPED: dict[str, tuple[str, type]] = {
    "--gpu-memory-utilization": ("gpu_memory_utilization", float),
    "--max-model-len": ("max_model_len", int),
    "--max-num-seqs": ("max_num_seqs", int),
    "--kv-cache-dtype": ("kv_cache_dtype", str),
    "--block-size": ("block_size", int),
    "--reasoning-parser": ("reasoning_parser", str),
    "--dtype": ("dtype", str),
    "--quantization": ("quantization", str),
    "--tensor-parallel-size": ("tensor_parallel_size", int),
    "--max-num-batched-tokens": ("max_num_batched_tokens", int),
    "--num-gpu-blocks-override": ("num_gpu_blocks_override", int),
    "--kv-cache-memory-bytes": ("kv_cache_memory_bytes", int),
    "--port": ("port", int),
}


def _validate(args: EngineArgs, where: str) -> None:
    if not 0.0 < args.gpu_memory_utilization <= 1.0:
        raise SpecError(
            f"{where}: --gpu-memory-utilization must be in (0, 1], "
            f"got {args.gpu_memory_utilization}"
        )
    for flag, value in (
        ("--max-model-len", args.max_model_len),
        ("--max-num-seqs", args.max_num_seqs),
        ("--block-size", args.block_size),
        ("--tensor-parallel-size", args.tensor_parallel_size),
    ):
        if value is not None and value <= 0:
            raise SpecError(f"{where}: {flag} must be positive, got {value}")
    if args.kv_cache_dtype != "auto" and args.kv_cache_dtype not in KV_DTYPE_BYTES:
        known = ", ".join(["auto", *sorted(KV_DTYPE_BYTES)])
        raise SpecError(f"{where}: --kv-cache-dtype {args.kv_cache_dtype!r} is not one of: {known}")
    if not 0 < args.port < 65536:
        raise SpecError(f"{where}: --port {args.port} is not a TCP port")
    if args.has_flag("--enable-auto-tool-choice") and not args.has_flag("--tool-call-parser"):
        raise SpecError(f"{where}: --enable-auto-tool-choice requires --tool-call-parser")
