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
from typing import Any

import httpx
import pytest

from harness.config import load_settings
from harness.errors import StartupError
from harness.pytest_require import skip_or_fail
from harness.report.run_dir import new_run_dir
from harness.stack.factory import twin_capability, twin_models
from harness.stack.process import ProcessBackend, TwinModelDirs
from harness.stack.procs import group_alive
from harness.vram.check import run_check

pytestmark = [pytest.mark.twin, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def models(request: pytest.FixtureRequest) -> TwinModelDirs:
    why = twin_capability()
    if why:
        skip_or_fail(request.config, "twin", why)
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
    pids = started_groups(backend.run_dir)
    assert pids and not any(group_alive(p) for p in pids.values())


# The child stands for a run in a terminal, where Ctrl-C raises KeyboardInterrupt. A background
# job of a non-interactive shell inherits SIGINT ignored, and Python then leaves it ignored; so
# the child restores the default before it execs pytest, whatever started this test run.
_WITH_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


def pytest_subprocess(
    args: list[str], reports: Path, target: str = "twin", env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    env = {**os.environ, **(env or {}), "HARNESS_REPORTS_DIR": str(reports)}
    return subprocess.Popen(
        [sys.executable, "-c", _WITH_SIGINT, "-m", "pytest", "-p", "no:cacheprovider", "-q",
         *args, "--harness-target", target],
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


def started_groups(run_dir: Path) -> dict[str, int]:
    """Service -> process group, from the run's pids.json."""
    doc = json.loads((run_dir / "pids.json").read_text())
    return {name: int(entry["pid"]) for name, entry in doc.items()}


def interrupt_and_check(proc: subprocess.Popen[bytes], reports: Path, sig: int) -> dict:
    proc.send_signal(sig)
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("the interrupted harness did not exit within 120 s") from None
    run_dir = next((reports / "runs").iterdir())
    record = json.loads((run_dir / "record.json").read_text())
    # An attached stack starts nothing, so it records no process groups.
    if record.get("target") != "attach":
        left = [name for name, pid in started_groups(run_dir).items() if group_alive(pid)]
        assert not left, f"still running after the interrupt: {left}\n{out.decode()[-2000:]}"
    return record


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_during_bring_up(models: TwinModelDirs, tmp_path: Path, sig: int) -> None:
    proc = pytest_subprocess(["tests/acceptance/test_contracts.py", "-k", "models_lists"], tmp_path)
    # The classifier has begun to start and is far from healthy (16 s on the twin): the signal
    # comes in the middle of the bring-up, and the primary, gated on it, never started.
    wait_for("runs/*/logs/vllm-router.log", tmp_path, 120)
    record = interrupt_and_check(proc, tmp_path, sig)
    assert record["status"] == "interrupted"
    run_dir = next((tmp_path / "runs").iterdir())
    assert not (run_dir / "logs" / "vllm-primary.log").exists(), (
        "the primary started: the interrupt came after the bring-up, not during it"
    )


@pytest.mark.any_primary_pool  # it checks the interrupt, not the primary's capacity
def test_interrupted_during_load(stack: Any, tmp_path: Path) -> None:
    if stack.target != "twin":
        pytest.skip("the interrupted run attaches to the session's twin")
    # The interrupted run attaches to the session's stack: what is checked is the harness's
    # handling of the interrupt (the record, locust), not a bring-up of its own.
    attach = {
        "HARNESS_ROUTER_API_KEY": stack.api_key,
        "HARNESS_TARGETS_ATTACH_ROUTER_URL": stack.entry.url,
        "HARNESS_TARGETS_ATTACH_CLASSIFIER_URL": stack.classifier.url,
        "HARNESS_TARGETS_ATTACH_PRIMARY_URL": stack.primary.url,
    }
    proc = pytest_subprocess(
        ["tests/load/test_profiles.py", "-k", "steady"], tmp_path, target="attach", env=attach
    )
    wait_for("runs/*/load/steady/requests.jsonl", tmp_path, 300)
    record = interrupt_and_check(proc, tmp_path, signal.SIGTERM)
    assert record["status"] == "interrupted"
    locust = subprocess.run(["pgrep", "-f", f"locust.*{tmp_path}"], capture_output=True)
    assert locust.returncode == 1, "a locust process is still running"
    # Attaching stopped nothing: the session's stack still serves.
    r = httpx.get(stack.router.url + "/health", timeout=30)
    assert r.status_code == 200, f"the session's router after the interrupt: {r.status_code}"
