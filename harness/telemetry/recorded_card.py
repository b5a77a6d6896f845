"""A recorded idle GPU, in place of NVML where there is no GPU (the `nvml` substitution).

The emulated GPU stack runs the gpu target's preflight unchanged; only its NVML reading comes
from here: a card of the configured size, idle, holding what an idle H100 80GB held in NVML with
no process on it (480 MiB, vllm-facts.md), with no compute processes listed.
"""

from __future__ import annotations

from harness.telemetry.nvml import GpuSnapshot

IDLE_USED_BYTES = 480 * 2**20
NAME = "recorded idle card"


def recorded_card(total_bytes: int, index: int = 0) -> GpuSnapshot:
    return GpuSnapshot(
        index=index,
        name=NAME,
        total_bytes=total_bytes,
        used_bytes=IDLE_USED_BYTES,
        free_bytes=total_bytes - IDLE_USED_BYTES,
        util_gpu_pct=0,
        util_mem_pct=0,
        processes=(),
    )
