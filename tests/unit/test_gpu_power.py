"""GPU cost along the load timeline: NVML readings (power, energy, SM clock, temperature, clock
event reasons), the figures over a series (energy, tokens per joule, throttled stretches beside
the client latency) and their sections in the record and the reports.

tests/unit/data/gpu-power-throttled.jsonl is a series in gpu-power.jsonl's format: 60 samples
0.5 s apart, two idle ones (gpu_idle) before the load, and one stretch of 12 samples at the
power cap (sw_power_cap, two of them also hw_thermal_slowdown) with the SM clock down, from
15.0 s to the next unthrottled sample at 21.0 s. Its energy counter is the power integrated by
trapezoids, so both ways of finding the energy can be checked against each other.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
import report_fixtures as fixtures

from harness.errors import CapabilityError
from harness.load.gpu_cost import (
    COUNTER,
    INTEGRATED,
    energy_over,
    gpu_cost,
    gpu_power_section,
    load_window,
    throttle_stretches,
)
from harness.load.records import RequestRecord
from harness.report.render_html import render_html
from harness.report.render_md import render_markdown
from harness.report.schema import validate_record
from harness.telemetry.gpu_power import (
    FILE_NAME,
    REASON_BITS,
    TWIN_REASON,
    GpuPowerSampler,
    NvmlReader,
    decode_reasons,
    read_series,
)
from harness.units import number

SERIES_PATH = Path(__file__).parent / "data" / "gpu-power-throttled.jsonl"
T0 = 1_700_000_000.0


@pytest.fixture
def series() -> list[dict[str, Any]]:
    rows = read_series(SERIES_PATH)
    assert len(rows) == 60
    return rows


def req(at: float, ttft: float, e2e: float, tokens: int = 50, **kw: Any) -> RequestRecord:
    fields: dict[str, Any] = {
        "user": "ChatUser", "target": "router", "intended_start": at, "actual_start": at,
        "status": 200, "ok": True, "route": "local", "ttft_s": ttft, "e2e_s": e2e,
        "output_tokens": tokens,
    }  # fmt: skip
    return RequestRecord(**(fields | kw))


def load_records() -> list[RequestRecord]:
    """One request a second from 2 s to 27 s (the last ends at 28 s); those sent while the card
    was throttled (15 s to 21 s) answer slower. One search answer and one failure, which the
    card's token count leaves out."""
    out = []
    for k in range(2, 28):
        slow = 15 <= k < 21
        out.append(req(T0 + k, 0.9 if slow else 0.2 + 0.01 * k, 3.0 if slow else 1.0))
    out.append(req(T0 + 5.5, 0.4, 0.5, tokens=900, route="search"))
    out.append(req(T0 + 6.5, 0.1, 0.1, tokens=700, ok=False, status=500))
    return out


# -- reading NVML ------------------------------------------------------------------------------


def test_clock_event_bits_decode_to_names_in_bit_order() -> None:
    assert decode_reasons(0x4 | 0x40) == ["sw_power_cap", "hw_thermal_slowdown"]
    assert decode_reasons(0x1 | 0x2 | 0x100) == [
        "gpu_idle", "applications_clocks_setting", "display_clock_setting",
    ]  # fmt: skip
    assert decode_reasons(0x8 | 0x10 | 0x20 | 0x80) == [
        "hw_slowdown", "sync_boost", "sw_thermal_slowdown", "hw_power_brake_slowdown",
    ]  # fmt: skip
    assert decode_reasons(0) == [] and decode_reasons(None) == []
    assert decode_reasons(0x4 | 0x400) == ["sw_power_cap", "0x400"]  # a reason NVML added later


def test_reason_bits_are_nvml_s_own() -> None:
    pynvml = pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed")
    names = {
        "gpu_idle": "GpuIdle", "applications_clocks_setting": "ApplicationsClocksSetting",
        "sw_power_cap": "SwPowerCap", "hw_slowdown": "HwSlowdown", "sync_boost": "SyncBoost",
        "sw_thermal_slowdown": "SwThermalSlowdown", "hw_thermal_slowdown": "HwThermalSlowdown",
        "hw_power_brake_slowdown": "HwPowerBrakeSlowdown",
        "display_clock_setting": "DisplayClockSetting",
    }  # fmt: skip
    for bit, name in REASON_BITS:
        assert getattr(pynvml, f"nvmlClocksThrottleReason{names[name]}") == bit, name
        event = getattr(pynvml, f"nvmlClocksEventReason{names[name]}", None)
        assert event in (None, bit), name


class FakeNvml:
    """The names of pynvml a reader calls; `fail` maps a function name to the error it raises."""

    NVML_ERROR_NOT_SUPPORTED = 3
    NVML_ERROR_FUNCTION_NOT_FOUND = 13
    NVML_ERROR_UNKNOWN = 999
    NVML_CLOCK_SM = 1
    NVML_TEMPERATURE_GPU = 0

    class NVMLError(Exception):
        def __init__(self, value: int) -> None:
            super().__init__(value)
            self.value = value

    def __init__(self, fail: dict[str, int] | None = None) -> None:
        self.fail = fail or {}
        self.calls: dict[str, int] = {}

    def _call(self, name: str, value: Any) -> Any:
        self.calls[name] = self.calls.get(name, 0) + 1
        if name in self.fail:
            raise self.NVMLError(self.fail[name])
        return value

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return f"gpu{index}"

    def nvmlDeviceGetPowerUsage(self, h: str) -> int:
        return int(self._call("power", 412_345))

    def nvmlDeviceGetTotalEnergyConsumption(self, h: str) -> int:
        return int(self._call("energy", 9_876_543_210))

    def nvmlDeviceGetClockInfo(self, h: str, kind: int) -> int:
        assert kind == self.NVML_CLOCK_SM
        return int(self._call("clock", 1755))

    def nvmlDeviceGetTemperature(self, h: str, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return int(self._call("temp", 67))

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: str) -> int:
        return int(self._call("events", 0x4))

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h: str) -> int:
        return int(self._call("throttle", 0x40))


def test_a_reading_is_in_watts_joules_mhz_and_celsius() -> None:
    reading = NvmlReader(nv=FakeNvml())()
    assert reading == {
        "power_w": 412.345, "energy_j": 9_876_543.21, "sm_clock_mhz": 1755, "temp_c": 67,
        "throttle_mask": 0x4,
    }  # fmt: skip


def test_a_field_the_board_does_not_support_is_none_and_not_asked_again() -> None:
    nv = FakeNvml({"energy": FakeNvml.NVML_ERROR_NOT_SUPPORTED, "temp": 999})
    reader = NvmlReader(nv=nv)
    first, second = reader(), reader()
    assert first["energy_j"] is None and second["energy_j"] is None
    assert nv.calls["energy"] == 1  # remembered as unsupported
    assert first["temp_c"] is None and nv.calls["temp"] == 2  # a passing error: asked again
    assert reader.errors == 2 and reader.unsupported == {"energy_j"}
    assert first["power_w"] == 412.345 and first["throttle_mask"] == 0x4


def test_a_driver_without_clock_event_reasons_is_asked_the_older_throttle_reasons() -> None:
    nv = FakeNvml({"events": FakeNvml.NVML_ERROR_FUNCTION_NOT_FOUND})
    reader = NvmlReader(nv=nv)
    assert reader()["throttle_mask"] == 0x40 and reader()["throttle_mask"] == 0x40
    assert nv.calls == nv.calls | {"events": 1, "throttle": 2}


def test_no_clock_reasons_at_all_is_none() -> None:
    nv = FakeNvml({"events": 3, "throttle": 3})
    reading = NvmlReader(nv=nv)()
    assert reading["throttle_mask"] is None and reading["power_w"] == 412.345


def test_the_sampler_writes_what_its_reader_read(tmp_path: Path, series: list[dict]) -> None:
    """Driven by the recorded series instead of a card: each row of gpu-power.jsonl is a
    reading of it, in order, with the reason names decoded."""
    fields = ("power_w", "energy_j", "sm_clock_mhz", "temp_c", "throttle_mask")
    replay = iter(series)
    enough = threading.Event()

    def reader() -> dict[str, Any]:
        r = next(replay, series[-1])
        if r is series[40]:
            enough.set()
        return {k: r[k] for k in fields}

    ticks = iter(float(i) for i in range(10_000))
    power = GpuPowerSampler(lambda: reader, interval_s=0.001, clock=lambda: next(ticks))
    with power:
        assert enough.wait(30), "the sampler never read 40 samples"
    saved = read_series(power.save(tmp_path) or tmp_path / "missing")
    assert len(saved) >= 42
    for got, want in zip(saved, series, strict=False):
        assert {k: got[k] for k in fields} == {k: want[k] for k in fields}
    assert saved[31]["throttle"] == ["sw_power_cap"]
    assert saved[36]["throttle"] == ["sw_power_cap", "hw_thermal_slowdown"]
    assert [r["t"] for r in saved[:3]] == [0.0, 1.0, 2.0]


def test_a_card_that_cannot_be_read_leaves_the_run_unmeasured(tmp_path: Path) -> None:
    def no_card() -> Any:
        raise CapabilityError("NVML is not usable here: Driver Not Loaded")

    power = GpuPowerSampler(no_card)
    with power:
        pass
    assert power.save(tmp_path) is None and not (tmp_path / FILE_NAME).exists()
    assert gpu_power_section(power, load_records()) == {
        "measured": False, "reason": "not measured: NVML is not usable here: Driver Not Loaded",
    }  # fmt: skip


@pytest.mark.parametrize("target", ["twin", "twin-docker"])
def test_twin_runs_say_not_measured(tmp_path: Path, target: str) -> None:
    power = GpuPowerSampler.for_target(target)
    with power:
        pass
    assert power.rows == [] and power.save(tmp_path) is None
    section = gpu_power_section(power, load_records())
    assert section == {"measured": False, "reason": TWIN_REASON}
    assert "substitution nvml" in TWIN_REASON
    doc = fixtures.record()
    for profile in doc["load"].values():
        profile["gpu_power"] = section
    md = render_markdown(validate_record(doc))
    assert "## GPU cost" in md and f"- GPU power: {TWIN_REASON}" in md
    assert "tokens/J" not in md  # no table of numbers that were never measured
    assert TWIN_REASON in render_html(doc)


def test_gpu_targets_read_nvml() -> None:
    assert GpuPowerSampler.for_target("gpu").open_reader is not None
    assert GpuPowerSampler.for_target("attach").skipped is None


# -- the figures -------------------------------------------------------------------------------


def test_tokens_per_joule_from_the_energy_counter(series: list[dict]) -> None:
    records = load_records()
    assert load_window(records) == (T0 + 2, T0 + 28)
    fig = gpu_cost(series, records)
    by_t = {r["t"]: r["energy_j"] for r in series}
    joules = by_t[T0 + 28] - by_t[T0 + 2]
    assert fig["energy_source"] == COUNTER
    assert fig["energy_j"] == pytest.approx(joules, abs=1e-3)
    assert fig["output_tokens"] == 26 * 50  # not the search answer's, not the failure's
    assert fig["tokens_per_joule"] == pytest.approx(1300 / joules, rel=1e-3)
    assert fig["window_s"] == 26.0 and fig["t0"] == T0 + 2
    assert fig["power_max_w"] == 400.0 and fig["temp_max_c"] == 81.0
    assert fig["sm_clock_mhz_min"] == 1300.0 and fig["sm_clock_mhz_max"] == 1980.0
    assert fig["unsupported"] == [] and fig["nvml_errors"] == 0


def test_tokens_per_joule_from_power_where_the_board_has_no_energy_counter(
    series: list[dict],
) -> None:
    counted = gpu_cost(series, load_records())
    no_counter = [r | {"energy_j": None} for r in series]
    fig = gpu_cost(no_counter, load_records())
    assert fig["energy_source"] == INTEGRATED and fig["unsupported"] == ["energy_j"]
    # the fixture's counter is the same trapezoids: the two ways agree
    assert fig["energy_j"] == pytest.approx(counted["energy_j"], rel=1e-6)
    assert fig["tokens_per_joule"] == pytest.approx(counted["tokens_per_joule"], rel=1e-6)


def test_power_integration_clips_to_the_window() -> None:
    rows = [{"t": 0.0, "power_w": 100.0}, {"t": 2.0, "power_w": 200.0}, {"t": 4.0}]
    assert energy_over(rows, 0.0, 2.0) == (300.0, INTEGRATED)
    assert energy_over(rows, 1.0, 2.0) == (175.0, INTEGRATED)  # 150 W at 1 s
    assert energy_over(rows, 1.0, 5.0) == (175.0, INTEGRATED)  # nothing past the last sample
    assert energy_over(rows, 3.0, 5.0) == (0, INTEGRATED)
    assert energy_over([{"t": 0.0, "power_w": 1.0}], 0.0, 1.0) == (None, None)


def test_a_counter_that_went_back_is_not_trusted() -> None:
    """A driver reload resets the counter: the power samples give the energy instead."""
    rows = [
        {"t": 0.0, "power_w": 100.0, "energy_j": 5000.0},
        {"t": 1.0, "power_w": 100.0, "energy_j": 10.0},
        {"t": 2.0, "power_w": 100.0, "energy_j": 110.0},
    ]
    assert energy_over(rows, 0.0, 2.0) == (200.0, INTEGRATED)


def test_the_throttled_stretch_and_the_latency_beside_it(series: list[dict]) -> None:
    assert throttle_stretches(series) == [
        (T0 + 15.0, T0 + 21.0, ["sw_power_cap", "hw_thermal_slowdown"])
    ]  # gpu_idle before the load is no throttling
    fig = gpu_cost(series, load_records())
    assert fig["throttled_s"] == 6.0
    (stretch,) = fig["throttle_stretches"]
    assert stretch["start_s"] == 13.0 and stretch["end_s"] == 19.0  # from the window's start
    assert stretch["reasons"] == ["sw_power_cap", "hw_thermal_slowdown"]
    assert stretch["requests"] == 6  # sent at 15 .. 20 s
    assert stretch["ttft_p95_s"] == pytest.approx(0.9) and stretch["e2e_p95_s"] == 3.0
    outside = fig["unthrottled"]
    assert outside["requests"] == 20 and outside["e2e_p95_s"] == 1.0
    assert outside["ttft_p95_s"] < 0.5 < stretch["ttft_p95_s"]


def test_a_stretch_still_on_at_the_series_end_closes_at_its_last_sample() -> None:
    rows = [
        {"t": 1.0, "throttle": []},
        {"t": 2.0, "throttle": ["hw_slowdown"]},
        {"t": 3.0, "throttle": ["hw_slowdown", "gpu_idle"]},
    ]
    assert throttle_stretches(rows) == [(2.0, 3.0, ["hw_slowdown"])]


def test_no_samples_is_not_measured() -> None:
    assert gpu_cost([], load_records()) == {"measured": False, "reason": "no NVML samples"}


# -- the record and the reports ----------------------------------------------------------------


def measured_doc(series: list[dict]) -> dict[str, Any]:
    doc = fixtures.record(run_id="20261126T062715Z-gpu", target="gpu")
    doc["load"]["steady"]["gpu_power"] = gpu_cost(series, load_records())
    return doc


def test_the_section_validates_against_the_record_schema(series: list[dict]) -> None:
    doc = measured_doc(series)
    assert validate_record(json.loads(json.dumps(doc))) == doc
    doc["load"]["steady"]["gpu_power"]["energy_source"] = "guessed"
    with pytest.raises(Exception, match=r"gpu_power\.energy_source"):
        validate_record(doc)


def test_report_md_gives_tokens_per_joule_and_flags_the_stretch(series: list[dict]) -> None:
    md = render_markdown(measured_doc(series))
    section = md.split("## GPU cost", 1)[1].split("\n## ", 1)[0]
    assert "| steady | " in section and "energy counter" in section
    fig = gpu_cost(series, load_records())
    assert f" {number(fig['tokens_per_joule'])} |" in section
    assert (
        "- steady: throttled 13 - 19 s (sw_power_cap, hw_thermal_slowdown): 6 requests sent "
        "in it, TTFT p95 900 ms, E2E p95 3,000 ms; outside every stretch 20 requests"
    ) in section


def test_report_html_plots_power_with_the_stretch_shaded(
    tmp_path: Path, series: list[dict]
) -> None:
    doc = measured_doc(series)
    run_dir = tmp_path / "run"
    (run_dir / "load" / "steady").mkdir(parents=True)
    (run_dir / "load" / "steady" / FILE_NAME).write_text(SERIES_PATH.read_text())
    page = render_html(doc, run_dir)
    section = page.split("<h2>GPU cost</h2>", 1)[1]
    assert '<svg id="plot-gpu-power-steady"' in section
    plot = section.split('<svg id="plot-gpu-power-steady"', 1)[1].split("</svg>", 1)[0]
    assert plot.count('class="band"') == 1
    assert "<title>sw_power_cap, hw_thermal_slowdown</title>" in plot
    assert "plot-gpu-power" not in render_html(doc)  # no run directory, no series to plot
