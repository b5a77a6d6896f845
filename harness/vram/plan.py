"""The VRAM model: pure functions from engine flags and architectures to memory figures.

These are the numbers `harness check` prints, the docs quote, and the twin is sized from.
vLLM's rules (vllm-facts.md, "Memory model"):
- budget per instance = ceil(total * gpu_memory_utilization), a fraction of TOTAL memory;
- KV pool = budget - weights - peak activations - non-torch memory - CUDA graphs;
- KV bytes per token = 2 * layers * kv_heads * head_dim * dtype bytes;
- capacity is counted in whole blocks; concurrency = blocks / ceil(max_model_len / block_size).
The CUDA context of each engine process sits outside its budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from harness.compose.engine_args import KV_DTYPE_BYTES, EngineArgs
from harness.units import GIB, MIB
from harness.vram.arch import ModelArch

DEFAULT_TOTAL_BYTES = 96 * GIB
DEFAULT_ACTIVATION_RESERVE = 2 * GIB
# NVML memory a process shows beyond what it reserves: 452 MiB measured on an H100 (vllm-facts.md,
# "Memory model"), 518-519 MiB on an H200 (infra/vram-requirements.md). The larger one is safer.
DEFAULT_CUDA_CONTEXT = 520 * MIB
DEFAULT_BLOCK_SIZE = 16


@dataclass(frozen=True)
class MemoryAssumptions:
    """What the model assumes about the card and each engine's overheads."""

    total_bytes: int = DEFAULT_TOTAL_BYTES
    total_source: str = "default"  # "default", "--gpu-memory", "harness.toml" or "NVML"
    activation_reserve_bytes: int = DEFAULT_ACTIVATION_RESERVE
    cuda_context_bytes: int = DEFAULT_CUDA_CONTEXT
    block_size: int = DEFAULT_BLOCK_SIZE
    # (service, bytes) where one engine's reserve differs: the transient peak scales with the
    # model's layer width, so a small classifier needs less than the primary.
    activation_reserve_by_service: tuple[tuple[str, int], ...] = ()

    def activation_reserve_for(self, service: str) -> int:
        return dict(self.activation_reserve_by_service).get(service, self.activation_reserve_bytes)


@dataclass(frozen=True)
class EngineMemory:
    """One engine's memory plan."""

    service: str
    model: str
    arch_source: str
    utilization: float
    budget_bytes: int
    weight_bytes: int
    activation_reserve_bytes: int
    kv_pool_bytes: int  # negative when weights and reserve exceed the budget
    kv_cache_dtype: str
    kv_bytes_per_token: int
    num_layers: int
    num_kv_heads: int
    head_dim: int
    kv_dtype_bytes: int
    block_size: int
    kv_capacity_tokens: int
    max_model_len: int
    max_num_seqs: int
    max_concurrency_at_max_model_len: float

    @property
    def full_sequences(self) -> int:
        """How many max-model-len sequences the KV pool holds at once."""
        return int(self.max_concurrency_at_max_model_len)

    @property
    def kv_blocks(self) -> int:
        return self.kv_capacity_tokens // self.block_size


@dataclass(frozen=True)
class VramPlan:
    """Every engine's plan plus the card-level sums."""

    assumptions: MemoryAssumptions
    engines: tuple[EngineMemory, ...]

    @property
    def utilization_sum(self) -> float:
        return round(sum(e.utilization for e in self.engines), 6)

    @property
    def budgets_bytes(self) -> int:
        return sum(e.budget_bytes for e in self.engines)

    @property
    def contexts_bytes(self) -> int:
        return self.assumptions.cuda_context_bytes * len(self.engines)

    @property
    def headroom_bytes(self) -> int:
        return self.assumptions.total_bytes - self.budgets_bytes - self.contexts_bytes

    def engine(self, service: str) -> EngineMemory:
        return next(e for e in self.engines if e.service == service)


def kv_dtype_bytes(kv_cache_dtype: str, arch: ModelArch) -> int:
    """Bytes per KV element: fp8 is 1, `auto` follows the model dtype."""
    if kv_cache_dtype == "auto":
        return arch.dtype_bytes
    return KV_DTYPE_BYTES[kv_cache_dtype]


def kv_bytes_per_token(arch: ModelArch, kv_cache_dtype: str) -> int:
    """2 (K and V) x layers x kv_heads x head_dim x dtype bytes."""
    return (
        2
        * arch.num_layers
        * arch.num_kv_heads
        * arch.head_dim
        * kv_dtype_bytes(kv_cache_dtype, arch)
    )


def budget_bytes(total_bytes: int, utilization: float) -> int:
    return math.ceil(total_bytes * utilization)


def kv_capacity(pool_bytes: int, per_token: int, block_size: int) -> int:
    """Tokens the pool holds, counted in whole blocks."""
    if pool_bytes <= 0:
        return 0
    return (pool_bytes // (per_token * block_size)) * block_size


def max_concurrency(capacity_tokens: int, max_model_len: int, block_size: int) -> float:
    """Full max-model-len sequences that fit, as vLLM's startup line reports it."""
    per_seq_blocks = math.ceil(max_model_len / block_size)
    return (capacity_tokens // block_size) / per_seq_blocks


def engine_memory(
    service: str, args: EngineArgs, arch: ModelArch, a: MemoryAssumptions
) -> EngineMemory:
    budget = budget_bytes(a.total_bytes, args.gpu_memory_utilization)
    weights = arch.weight_bytes // args.tensor_parallel_size
    reserve = a.activation_reserve_for(service)
    if args.kv_cache_memory_bytes is not None:
        pool = args.kv_cache_memory_bytes
    else:
        pool = budget - weights - reserve
    per_token = kv_bytes_per_token(arch, args.kv_cache_dtype) // args.tensor_parallel_size
    block = args.block_size or a.block_size
    capacity = kv_capacity(pool, per_token, block)
    mml = args.max_model_len or arch.max_position_embeddings or 0
    return EngineMemory(
        service=service,
        model=args.model,
        arch_source=arch.source,
        utilization=args.gpu_memory_utilization,
        budget_bytes=budget,
        weight_bytes=weights,
        activation_reserve_bytes=reserve,
        kv_pool_bytes=pool,
        kv_cache_dtype=args.kv_cache_dtype,
        kv_bytes_per_token=per_token,
        num_layers=arch.num_layers,
        num_kv_heads=arch.num_kv_heads,
        head_dim=arch.head_dim,
        kv_dtype_bytes=kv_dtype_bytes(args.kv_cache_dtype, arch),
        block_size=block,
        kv_capacity_tokens=capacity,
        max_model_len=mml,
        max_num_seqs=args.max_num_seqs,
        max_concurrency_at_max_model_len=max_concurrency(capacity, mml, block) if mml else 0.0,
    )


def plan(
    engines: Sequence[tuple[str, EngineArgs, ModelArch]], assumptions: MemoryAssumptions
) -> VramPlan:
    return VramPlan(
        assumptions=assumptions,
        engines=tuple(engine_memory(s, args, arch, assumptions) for s, args, arch in engines),
    )
