"""NVML readings (nvidia-ml-py, import name `pynvml`), when a GPU and the library are present.

GPU memory of a vLLM engine is held by its EngineCore child process, not by the API server's
PID, and NVML reports host PIDs; `container_of` maps a PID to its container via /proc.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import CapabilityError

_CONTAINER_ID = re.compile(r"(?:docker[-/]|containers/)([0-9a-f]{64})")


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    used_bytes: int | None  # None where the driver does not report per-process memory
    container_id: str | None = None


@dataclass(frozen=True)
class GpuSnapshot:
    index: int
    name: str
    total_bytes: int
    used_bytes: int
    free_bytes: int
    util_gpu_pct: int | None
    util_mem_pct: int | None
    processes: tuple[GpuProcess, ...]


def _pynvml() -> Any:
    try:
        import pynvml
    except ImportError:
        raise CapabilityError("nvidia-ml-py is not installed (pip install '.[gpu]')") from None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:  # LibraryNotFound, DriverNotLoaded, ...
        raise CapabilityError(f"NVML is not usable here: {exc}") from None
    return pynvml


def nvml_errors() -> tuple[type[Exception], ...]:
    """What an NVML reading raises when there is no usable GPU: ours, and pynvml's own."""
    try:
        import pynvml
    except ImportError:
        return (CapabilityError,)
    return (CapabilityError, pynvml.NVMLError)


def nvml_device_count() -> int:
    """How many GPUs NVML sees; 0 when NVML or the library is missing."""
    try:
        nv = _pynvml()
    except CapabilityError:
        return 0
    try:
        return int(nv.nvmlDeviceGetCount())
    finally:
        nv.nvmlShutdown()


def container_of(pid: int, proc: Path = Path("/proc")) -> str | None:
    """The container id of a host PID, from its cgroup file; None for a host process."""
    try:
        text = (proc / str(pid) / "cgroup").read_text()
    except OSError:
        return None
    m = _CONTAINER_ID.search(text)
    return m.group(1) if m else None


def snapshot(index: int = 0) -> GpuSnapshot:
    """Memory, utilization and compute processes of GPU `index`."""
    nv = _pynvml()
    try:
        h = nv.nvmlDeviceGetHandleByIndex(index)
        name = nv.nvmlDeviceGetName(h)
        mem = nv.nvmlDeviceGetMemoryInfo(h)
        ug: int | None = None
        um: int | None = None
        try:
            util = nv.nvmlDeviceGetUtilizationRates(h)
            ug, um = int(util.gpu), int(util.memory)
        except nv.NVMLError:  # some boards (and MIG slices) do not report utilization
            pass
        procs = []
        for p in nv.nvmlDeviceGetComputeRunningProcesses(h):
            used = getattr(p, "usedGpuMemory", None)
            procs.append(
                GpuProcess(int(p.pid), None if used is None else int(used), container_of(p.pid))
            )
        return GpuSnapshot(
            index=index,
            name=name.decode() if isinstance(name, bytes) else str(name),
            total_bytes=int(mem.total),
            used_bytes=int(mem.used),
            free_bytes=int(mem.free),
            util_gpu_pct=ug,
            util_mem_pct=um,
            processes=tuple(procs),
        )
    finally:
        nv.nvmlShutdown()


def total_memory_or_none(index: int = 0) -> int | None:
    """The card's total memory, or None when no GPU is visible."""
    try:
        return snapshot(index).total_bytes
    except nvml_errors():  # no library, no driver, no device: all mean "no GPU here"
        return None
