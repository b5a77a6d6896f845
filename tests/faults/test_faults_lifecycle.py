"""Bring-up failures and interrupts, with real engines: the owner gets the service's name and its
log tail, the run record says what happened, and no process is left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.config import load_settings
from harness.errors import StartupError
from harness.report.run_dir import new_run_dir
from harness.stack.factory import twin_capability, twin_models
from harness.stack.process import ProcessBackend, TwinModelDirs
from harness.stack.procs import group_alive
from harness.vram.check import run_check

pytestmark = [pytest.mark.twin, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def models() -> TwinModelDirs:
    why = twin_capability()
    if why:
        pytest.skip(why)
    return twin_models(progress=lambda _: None)


def test_engine_that_cannot_start_fails_fast_naming_it(models: TwinModelDirs, tmp_path: Path):
    result = run_check(ROOT / "infra/docker-compose.yml", load_settings(ROOT / "harness.toml"))
    backend = ProcessBackend(
        spec=result.spec, plan=result.plan, models=models,
        run_dir=new_run_dir("twin-fault", root=tmp_path),
        kv_overrides={"primary": 1024},  # less than one 32,768-token sequence: vLLM refuses
        only=("vllm-primary",), progress=print,
    )  # fmt: skip
    started = time.monotonic()
    with pytest.raises(StartupError) as exc:
        backend.up()
    elapsed = time.monotonic() - started
    assert exc.value.service == "vllm-primary"
    assert "exited with code" in exc.value.reason, "it should fail on exit, not on the timeout"
    assert "max seq len" in exc.value.reason, exc.value.reason  # the root cause, named
    assert exc.value.log_tail
    assert elapsed < backend.startup_timeout_s
    pids = json.loads((backend.run_dir / "pids.json").read_text())
    assert pids and not any(group_alive(p) for p in pids.values())


# The child stands for a run in a terminal, where Ctrl-C raises KeyboardInterrupt. A background
# job of a non-interactive shell inherits SIGINT ignored, and Python then leaves it ignored; so
# the child restores the default before it execs pytest, whatever started this test run.
_WITH_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


def pytest_subprocess(args: list[str], reports: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HARNESS_REPORTS_DIR": str(reports)}
    return subprocess.Popen(
        [sys.executable, "-c", _WITH_SIGINT, "-m", "pytest", "-p", "no:cacheprovider", "-q",
         *args, "--harness-target", "twin"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def wait_for(pattern: str, root: Path, timeout_s: float) -> Path:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [p for p in root.glob(pattern) if p.stat().st_size > 0]
        if found:
            return found[0]
        time.sleep(0.5)
    raise AssertionError(f"{pattern} did not appear under {root} within {timeout_s:.0f} s")


def interrupt_and_check(proc: subprocess.Popen[bytes], reports: Path, sig: int) -> dict:
    proc.send_signal(sig)
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("the interrupted harness did not exit within 120 s") from None
    run_dir = next((reports / "runs").iterdir())
    record = json.loads((run_dir / "record.json").read_text())
    pids = json.loads((run_dir / "pids.json").read_text())
    left = [name for name, pid in pids.items() if group_alive(pid)]
    assert not left, f"still running after the interrupt: {left}\n{out.decode()[-2000:]}"
    return record


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_during_bring_up(models: TwinModelDirs, tmp_path: Path, sig: int) -> None:
    proc = pytest_subprocess(["tests/acceptance/test_contracts.py", "-k", "models_lists"], tmp_path)
    wait_for("runs/*/logs/vllm-router.log", tmp_path, 120)
    time.sleep(2)
    record = interrupt_and_check(proc, tmp_path, sig)
    assert record["status"] == "interrupted"


def test_interrupted_during_load(models: TwinModelDirs, tmp_path: Path) -> None:
    proc = pytest_subprocess(["tests/load/test_profiles.py", "-k", "steady"], tmp_path)
    wait_for("runs/*/load/steady/requests.jsonl", tmp_path, 600)
    record = interrupt_and_check(proc, tmp_path, signal.SIGTERM)
    assert record["status"] == "interrupted"
    locust = subprocess.run(["pgrep", "-f", f"locust.*{tmp_path}"], capture_output=True)
    assert locust.returncode == 1, "a locust process is still running"
