"""An engine's own account of its GPU memory, from its startup log.

vLLM 0.32 (`vllm/v1/worker/gpu_worker.py`, `compile_or_warm_up_model`) logs at INFO, after CUDA
graph capture and only when the KV pool was profiled (no --kv-cache-memory-bytes):
  "Free memory on device (F/T GiB) on startup. Desired GPU memory utilization is (u, R GiB).
  Actual usage is C GiB for consumed memory (weights + non-torch), P GiB for peak activation,
  and G GiB for CUDAGraph memory. Replace gpu_memory_utilization config with ... Current kv
  cache memory in use is K GiB."
Releases around v0.11 log the same line (at DEBUG) with weights and non-torch memory apart:
  "... Actual usage is W GiB for weight, P GiB for peak activation, N GiB for non-torch memory,
  and G GiB for CUDAGraph memory. ..."
and the oldest form of it lacks the "Desired GPU memory utilization" sentence.
Every figure is rounded to 0.01 GiB. In 0.32, K = R - C - P: P already holds the CUDA graph
estimate, and G is the memory the capture really took.

The weights alone come from "Model loading took %s GiB memory and %.6f seconds" (0.32;
earlier "Model loading took %.4f GiB and %.6f seconds").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NUM = r"-?\d+(?:\.\d+)?"
_BREAKDOWN = re.compile(
    rf"Free memory on device \((?P<free>{_NUM})/(?P<total>{_NUM}) GiB\) on startup\."
    rf"(?: Desired GPU memory utilization is \((?P<util>{_NUM}), (?P<requested>{_NUM}) GiB\)\.)?"
    r" Actual usage is (?:"
    rf"(?P<consumed>{_NUM}) GiB for consumed memory \(weights \+ non-torch\), "
    rf"(?P<peak>{_NUM}) GiB for peak activation,"
    rf"|(?P<weights>{_NUM}) GiB for weight, (?P<peak_v011>{_NUM}) GiB for peak activation, "
    rf"(?P<non_torch>{_NUM}) GiB for non-torch memory,"
    rf") and (?P<graph>{_NUM}) GiB for CUDAGraph memory\."
    rf"(?:[^\n]*? Current kv cache memory in use is (?P<kv>{_NUM}) GiB\.)?"
)
_LOADING = re.compile(rf"Model loading took (?P<gib>{_NUM}) GiB(?: memory)? and")


@dataclass(frozen=True)
class MemoryBreakdown:
    """One engine's startup memory figures in GiB, as vLLM logged them."""

    free_gib: float  # free on the device when this engine started
    total_gib: float  # the device total vLLM budgets from (cudaMemGetInfo, not NVML)
    utilization: float | None
    requested_gib: float | None  # the budget, ceil(total x utilization)
    consumed_gib: float  # weights + non-torch memory
    peak_activation_gib: float
    cuda_graph_gib: float
    kv_cache_gib: float | None
    weights_gib: float | None = None  # logged apart only by the v0.11-era line
    non_torch_gib: float | None = None  # likewise
    model_loading_gib: float | None = None
    text: str = ""

    @property
    def reserve_gib(self) -> float | None:
        """What the VRAM model's activation reserve stands for on this engine: the budget less
        the weights and the KV pool, i.e. what `check.activation_reserve` should be."""
        weights = self.weights_gib if self.weights_gib is not None else self.model_loading_gib
        if self.requested_gib is None or self.kv_cache_gib is None or weights is None:
            return None
        return round(self.requested_gib - weights - self.kv_cache_gib, 2)

    def to_dict(self) -> dict[str, float | None]:
        return {
            "free_gib": self.free_gib,
            "total_gib": self.total_gib,
            "utilization": self.utilization,
            "requested_gib": self.requested_gib,
            "consumed_gib": self.consumed_gib,
            "weights_gib": self.weights_gib,
            "non_torch_gib": self.non_torch_gib,
            "model_loading_gib": self.model_loading_gib,
            "peak_activation_gib": self.peak_activation_gib,
            "cuda_graph_gib": self.cuda_graph_gib,
            "kv_cache_gib": self.kv_cache_gib,
            "reserve_gib": self.reserve_gib,
        }


def _f(value: str | None) -> float | None:
    return None if value is None else float(value)


def parse_model_loading_gib(text: str) -> float | None:
    found = list(_LOADING.finditer(text))
    return float(found[-1].group("gib")) if found else None


def parse_memory_breakdown(text: str) -> MemoryBreakdown | None:
    """The last memory breakdown line in `text` (a log), or None when the engine logged none."""
    found = list(_BREAKDOWN.finditer(text))
    if not found:
        return None
    m = found[-1]
    weights, non_torch = _f(m.group("weights")), _f(m.group("non_torch"))
    if m.group("consumed") is not None:
        consumed, peak = float(m.group("consumed")), float(m.group("peak"))
    else:
        assert weights is not None and non_torch is not None  # the other alternative matched
        consumed, peak = round(weights + non_torch, 2), float(m.group("peak_v011"))
    line_start = text.rfind("\n", 0, m.start()) + 1
    line_end = text.find("\n", m.end())
    return MemoryBreakdown(
        free_gib=float(m.group("free")),
        total_gib=float(m.group("total")),
        utilization=_f(m.group("util")),
        requested_gib=_f(m.group("requested")),
        consumed_gib=consumed,
        peak_activation_gib=peak,
        cuda_graph_gib=float(m.group("graph")),
        kv_cache_gib=_f(m.group("kv")),
        weights_gib=weights,
        non_torch_gib=non_torch,
        model_loading_gib=parse_model_loading_gib(text),
        text=text[line_start : line_end if line_end != -1 else None].strip(),
    )
