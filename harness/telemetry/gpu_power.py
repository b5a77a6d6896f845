"""The GPU's power, energy, SM clock, temperature and clock event (throttle) reasons along a load
run, read from NVML every `interval_s` in a daemon thread and written to `gpu-power.jsonl`.

Only the gpu and attach targets have a card to read; on the twins NVML is the named `nvml`
substitution (harness.twin.substitutions) and nothing is sampled. The reading function is a
seam: `NvmlReader` reads a real card, a test passes a recorded series instead.

A row: t (epoch s), power_w, energy_j (the driver's counter since it loaded; None where the
board has none), sm_clock_mhz, temp_c, throttle_mask and throttle (the mask's reason names).
A field the board does not support is None, and is not asked for again.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import CapabilityError

FILE_NAME = "gpu-power.jsonl"
GPU_TARGETS = ("gpu", "attach")
TWIN_REASON = "not measured on the twin (substitution nvml)"

# nvmlClocksEventReason* (formerly nvmlClocksThrottleReason*): the bit of each reason in the
# mask nvmlDeviceGetCurrentClocksEventReasons returns, in the NVML headers' order.
REASON_BITS: tuple[tuple[int, str], ...] = (
    (0x001, "gpu_idle"),
    (0x002, "applications_clocks_setting"),
    (0x004, "sw_power_cap"),
    (0x008, "hw_slowdown"),
    (0x010, "sync_boost"),
    (0x020, "sw_thermal_slowdown"),
    (0x040, "hw_thermal_slowdown"),
    (0x080, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
)
# The reasons that hold the clocks below what the load asks for. An idle card, a clock the
# owner set and sync boost lower the clock too, but none of them is the card protecting itself.
THROTTLING = frozenset(
    {"sw_power_cap", "hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown",
     "hw_power_brake_slowdown"}
)  # fmt: skip

Reading = dict[str, Any]


def decode_reasons(mask: int | None) -> list[str]:
    """The reason names of a clock event mask, in bit order; a bit NVML may add later reads as
    its hex value."""
    if mask is None:
        return []
    names = [name for bit, name in REASON_BITS if mask & bit]
    known = 0
    for bit, _ in REASON_BITS:
        known |= bit
    rest = mask & ~known
    bit = 1
    while rest:
        if rest & bit:
            names.append(f"0x{bit:x}")
            rest &= ~bit
        bit <<= 1
    return names


def throttling(reasons: Iterable[str]) -> list[str]:
    """The reasons among `reasons` that count as throttling."""
    return [r for r in reasons if r in THROTTLING]


class NvmlReader:
    """Reads one card through pynvml (or `nv`, a module with its names, in tests). Opening it
    raises CapabilityError where there is no library, driver or device."""

    def __init__(self, index: int = 0, nv: Any = None) -> None:
        if nv is None:
            from harness.telemetry.nvml import _pynvml as nvml_library

            nv = nvml_library()
            self._owns_init = True
        else:
            self._owns_init = False
        self.nv = nv
        try:
            self.handle = nv.nvmlDeviceGetHandleByIndex(index)
        except nv.NVMLError as exc:
            self.close()
            raise CapabilityError(f"NVML has no GPU {index}: {exc}") from None
        self.unsupported: set[str] = set()
        self.errors = 0
        self._reasons_call: Callable[[Any], int] | None = None

    def _not_supported(self, exc: Exception) -> bool:
        return getattr(exc, "value", None) == getattr(self.nv, "NVML_ERROR_NOT_SUPPORTED", 3)

    def _field(self, name: str, call: Callable[[], Any]) -> Any:
        if name in self.unsupported:
            return None
        try:
            value = call()
        except self.nv.NVMLError as exc:
            if self._not_supported(exc):
                self.unsupported.add(name)
            else:  # a passing error (the card busy, a driver hiccup): this sample only
                self.errors += 1
            return None
        return value

    def _reasons(self, handle: Any) -> int:
        if self._reasons_call is None:
            nv = self.nv
            newer = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None)
            older = getattr(nv, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
            missing = getattr(nv, "NVML_ERROR_FUNCTION_NOT_FOUND", 13)
            if newer is not None:
                try:
                    mask = int(newer(handle))
                except nv.NVMLError as exc:  # a driver older than the event-reasons name
                    if getattr(exc, "value", None) != missing or older is None:
                        raise
                else:
                    self._reasons_call = newer
                    return mask
            if older is None:
                raise nv.NVMLError(getattr(nv, "NVML_ERROR_NOT_SUPPORTED", 3))
            self._reasons_call = older
        return int(self._reasons_call(handle))

    def __call__(self) -> Reading:
        """One reading; power in W (NVML: mW), energy in J (NVML: mJ)."""
        nv, h = self.nv, self.handle
        mw = self._field("power_w", lambda: nv.nvmlDeviceGetPowerUsage(h))
        mj = self._field("energy_j", lambda: nv.nvmlDeviceGetTotalEnergyConsumption(h))
        mask = self._field("throttle_mask", lambda: self._reasons(h))
        return {
            "power_w": None if mw is None else mw / 1000,
            "energy_j": None if mj is None else mj / 1000,
            "sm_clock_mhz": self._field(
                "sm_clock_mhz", lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)
            ),
            "temp_c": self._field(
                "temp_c", lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)
            ),
            "throttle_mask": None if mask is None else int(mask),
        }

    def close(self) -> None:
        if self._owns_init:
            self._owns_init = False
            with contextlib.suppress(self.nv.NVMLError):
                self.nv.nvmlShutdown()


def row(t: float, reading: Mapping[str, Any]) -> dict[str, Any]:
    """One line of gpu-power.jsonl from a reading."""
    mask = reading.get("throttle_mask")
    out: dict[str, Any] = {"t": round(t, 3)}
    for key in ("power_w", "energy_j", "sm_clock_mhz", "temp_c"):
        v = reading.get(key)
        out[key] = None if v is None else round(float(v), 3)
    out["throttle_mask"] = mask
    out["throttle"] = decode_reasons(mask)
    return out


@dataclass
class GpuPowerSampler:
    """Samples `reader` every `interval_s` seconds in a daemon thread, between start and stop.

    `skipped` says why nothing is sampled (a twin, no NVML); `open_reader` opens the reader on
    start, so a card that cannot be read sets `skipped` instead of failing the load run."""

    open_reader: Callable[[], Callable[[], Reading]] | None
    interval_s: float = 0.25
    skipped: str | None = None
    clock: Callable[[], float] = time.time
    rows: list[dict[str, Any]] = field(default_factory=list)
    _reader: Callable[[], Reading] | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @classmethod
    def for_target(cls, target: str, interval_s: float = 0.25, index: int = 0) -> GpuPowerSampler:
        if target not in GPU_TARGETS:
            return cls(None, interval_s, skipped=TWIN_REASON)
        return cls(lambda: NvmlReader(index), interval_s)

    @property
    def errors(self) -> int:
        return int(getattr(self._reader, "errors", 0))

    def start(self) -> GpuPowerSampler:
        if self.open_reader is None:
            return self
        try:
            self._reader = self.open_reader()
        except CapabilityError as exc:
            self.skipped = f"not measured: {exc}"
            return self
        self._sample()
        self._thread = threading.Thread(target=self._run, name="harness-gpu-power", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._reader is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._sample()
        close = getattr(self._reader, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> GpuPowerSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            next_at += self.interval_s
            self._stop.wait(max(0.0, next_at - time.monotonic()))
            if not self._stop.is_set():
                self._sample()

    def _sample(self) -> None:
        assert self._reader is not None
        self.rows.append(row(self.clock(), self._reader()))

    def save(self, directory: Path) -> Path | None:
        """gpu-power.jsonl in `directory`; None (and no file) when nothing was sampled."""
        if not self.rows:
            return None
        path = directory / FILE_NAME
        path.write_text("".join(json.dumps(r) + "\n" for r in self.rows))
        return path


def read_series(path: Path) -> list[dict[str, Any]]:
    """The rows of a gpu-power.jsonl (or a recorded series in its format); a line cut short by
    an interrupted run is left out."""
    out: list[dict[str, Any]] = []
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(r, dict) and "t" in r:
            r.setdefault("throttle", decode_reasons(r.get("throttle_mask")))
            out.append(r)
    return out
