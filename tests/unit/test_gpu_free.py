from __future__ import annotations

from pathlib import Path

from harness.config import Settings
from harness.telemetry.nvml import GpuProcess, GpuSnapshot, container_of
from harness.units import GIB
from harness.vram.check import run_check
from harness.vram.free import free_memory_finding

CID = "a" * 64


def snap(free: int, procs: tuple[GpuProcess, ...] = ()) -> GpuSnapshot:
    total = 96 * GIB
    return GpuSnapshot(0, "Test GPU", total, total - free, free, 0, 0, procs)


def plan(real_compose: Path):
    return run_check(real_compose, Settings(path=None, environ={})).plan


def test_enough_free_memory_passes(real_compose: Path) -> None:
    assert free_memory_finding(plan(real_compose), snap(90 * GIB)) is None


def test_refusal_names_processes_and_containers(real_compose: Path, tmp_path: Path) -> None:
    (tmp_path / "4242").mkdir()
    (tmp_path / "4242" / "comm").write_text("vllm-engine\n")
    procs = (GpuProcess(4242, 60 * GIB, CID), GpuProcess(7, None))
    f = free_memory_finding(plan(real_compose), snap(30 * GIB, procs), proc=tmp_path)
    assert f is not None and f.rule == "gpu-free-memory"
    assert "30.00 GiB free of 96.00 GiB" in f.message
    assert f"pid 4242 (vllm-engine, container {CID[:12]}): 60.00 GiB" in f.message
    assert "pid 7 (?): unknown" in f.message


def test_container_of_reads_the_cgroup_file(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "cgroup").write_text(f"0::/system.slice/docker-{CID}.scope\n")
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / "cgroup").write_text("0::/user.slice\n")
    assert container_of(1, tmp_path) == CID
    assert container_of(2, tmp_path) is None
    assert container_of(3, tmp_path) is None
