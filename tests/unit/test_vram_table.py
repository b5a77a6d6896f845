"""`harness vram`: the README's per-container table from `harness check`'s plan, with NVML's
measurement beside each prediction when a GPU is visible."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.config import Settings
from harness.telemetry.nvml import GpuProcess, GpuSnapshot
from harness.units import GIB, MIB
from harness.vram.check import run_check
from harness.vram.table import build, render
from harness.vram.usage import EngineUse

SETTINGS = Settings(path=None, environ={})


def rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


def test_predictions_only_without_a_gpu(real_compose: Path) -> None:
    table = build(run_check(real_compose, SETTINGS), note="NVML sees no GPU here (no driver)")
    text = render(table)
    # The figures infra/README.md quotes: budgets 13.44 and 62.40 GiB, 19.14 GiB left.
    assert ["vllm-router", "0.14", "13.44", "GiB", "0.51", "GiB", "13.95", "GiB"] in rows(text)
    assert ["vllm-primary", "0.65", "62.40", "GiB", "0.51", "GiB", "62.91", "GiB"] in rows(text)
    assert ["total", "0.79", "75.84", "GiB", "1.02", "GiB", "76.86", "GiB"] in rows(text)
    assert ["free", "19.14", "GiB"] in rows(text)
    assert text.splitlines()[-1] == "predictions only: NVML sees no GPU here (no driver)"
    assert "measured" not in text


def test_measured_beside_predicted(real_compose: Path) -> None:
    result = run_check(real_compose, SETTINGS)
    snap = GpuSnapshot(
        0, "NVIDIA H200", 96 * GIB, 78 * GIB, 18 * GIB, 3, 40,
        (GpuProcess(31, 13 * GIB), GpuProcess(41, 63 * GIB)),
    )  # fmt: skip
    uses = [
        EngineUse("vllm-router", 13 * GIB, 0, (31,)),
        EngineUse("vllm-primary", 63 * GIB, 0, (41,)),
    ]
    text = render(build(result, snap, uses))
    assert text.splitlines()[0] == "GPU: NVIDIA H200, 96.00 GiB total (harness.toml)"
    assert "measured (NVML)" in text.splitlines()[1]
    router = next(r for r in rows(text) if r[0] == "vllm-router")
    assert router[-3:] == ["13.00", "GiB", "-6.8%"]
    others = next(r for r in rows(text) if r[0] == "other")
    assert others[-3:] == ["2.00", "GiB", "-"]  # 78 GiB used, 76 of it by the engines
    assert ["free", "19.14", "GiB", "18.00", "GiB"] in rows(text)
    assert "predictions only" not in text


def test_an_engine_not_running_here_shows_no_measurement(real_compose: Path) -> None:
    result = run_check(real_compose, SETTINGS)
    snap = GpuSnapshot(0, "G", 96 * GIB, 600 * MIB, 96 * GIB - 600 * MIB, 0, 0, ())
    uses = [EngineUse("vllm-router", 0, 0, ()), EngineUse("vllm-primary", 0, 0, ())]
    table = build(result, snap, uses, note="no GPU process found for vllm-router, vllm-primary")
    router = next(r for r in table.rows if r.container == "vllm-router")
    assert router.measured_bytes is None
    assert render(table).splitlines()[-1].startswith("no GPU process found")


def test_the_command_without_a_gpu(real_compose: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vram", "--compose", str(real_compose), "--gpu-memory", "96GiB"]) == 0
    out = capsys.readouterr().out
    assert "container" in out and "CUDA overhead" in out
    if "predictions only" in out:  # no GPU on this machine
        assert "free" in out
