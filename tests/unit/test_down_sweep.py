"""`harness down --sweep` ends the process twin a killed harness left behind, found through its
run's pids.json, and leaves alone any process that merely got a recorded PID later."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from harness.stack.procs import (
    ProcessIdentity,
    group_alive,
    process_identity,
    stop_group,
    sweep_recorded,
)

UNIT = Path(__file__).resolve().parent
HARNESS = str(Path(sys.executable).with_name("harness"))

# A harness that brings the process twin up (every service a stand-in, test_bringup's
# StubBackend, started by the real ProcessBackend code) and then only waits, to be SIGKILLed.
CHILD = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from harness.vram.check import run_check
from harness.config import Settings
from harness.report.run_dir import new_run_dir
from harness.stack.process import TwinModelDirs
from test_bringup import StubBackend

result = run_check(Path(sys.argv[2]), Settings(path=None, environ={}))
tmp = Path(sys.argv[3])
backend = StubBackend(
    spec=result.spec, plan=result.plan, models=TwinModelDirs(tmp, tmp),
    run_dir=new_run_dir("twin"), progress=lambda _: None,
)
backend.delays, backend.fail, backend.events = {}, {}, tmp / "events.jsonl"
backend.up()
print("up", flush=True)
time.sleep(600)
"""


def sweep_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        # Not <cwd>/reports, the sweep's other root: each root is tested on its own.
        "HARNESS_REPORTS_DIR": str(tmp_path / "elsewhere"),
        "HARNESS_STATE_DIR": str(tmp_path / "state"),
        # Never this machine's engine: --sweep would remove every harness container on it.
        "DOCKER_HOST": "unix:///nonexistent/docker.sock",
    }


def test_sweep_ends_the_twin_of_a_killed_harness(real_compose: Path, tmp_path: Path) -> None:
    env = sweep_env(tmp_path)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(UNIT), str(real_compose), str(tmp_path)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.strip() == "up", line + child.stdout.read()
    finally:
        child.kill()  # SIGKILL: the harness gets no chance to tear anything down
        child.wait(timeout=10)
    (pids_file,) = (tmp_path / "elsewhere" / "runs").glob("*/pids.json")
    pids = json.loads(pids_file.read_text())
    groups = [entry["pid"] for entry in pids.values()]
    try:  # every group the killed harness left is stopped, whichever assertion fails
        assert set(pids) == {"vllm-router", "vllm-primary", "fake-xai", "ai-router", "traefik"}
        assert all(group_alive(g) for g in groups), "the stand-ins should outlive the harness"
        down = subprocess.run(
            [HARNESS, "down", "--sweep"], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        out = down.stdout + down.stderr
        left = [name for name, entry in pids.items() if group_alive(entry["pid"])]
        assert not left, f"still running after `harness down --sweep`: {left}\n{out}"
        for name in pids:
            assert f"{name} (process group {pids[name]['pid']}" in out and "stopped" in out, out
        # Docker is unreachable here on purpose: the process sweep still ran, the code says so.
        assert down.returncode == 2 and "cannot reach Docker" in out, out
    finally:
        for g in groups:
            stop_group(g, grace_s=1)


def test_a_run_under_the_default_reports_folder_is_swept_too(tmp_path: Path) -> None:
    """A harness run without HARNESS_REPORTS_DIR wrote its pids.json under <cwd>/reports; a
    later `harness down --sweep` with the variable set still finds it."""
    engine = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        identity = process_identity(engine.pid)
        assert identity is not None
        pids = tmp_path / "reports" / "runs" / "20261206T000000Z-twin" / "pids.json"
        pids.parent.mkdir(parents=True)
        pids.write_text(json.dumps({"vllm-primary": identity.to_dict()}))
        down = subprocess.run(
            [HARNESS, "down", "--sweep"], cwd=tmp_path, env=sweep_env(tmp_path),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        out = down.stdout + down.stderr
        assert f"vllm-primary (process group {engine.pid}" in out and "stopped" in out, out
        assert not group_alive(engine.pid), out
    finally:
        engine.kill()
        engine.wait()


def test_a_recorded_pid_now_held_by_another_process_is_left_alone(tmp_path: Path) -> None:
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        now = process_identity(stranger.pid)
        assert now is not None
        # What pids.json would say had an earlier process had this PID: started at another tick.
        earlier = ProcessIdentity(now.pid, now.boot_id, now.start_ticks - 1, ("vllm",))
        reused = tmp_path / "a" / "pids.json"
        reused.parent.mkdir()
        reused.write_text(json.dumps({"vllm-primary": earlier.to_dict()}))
        bare = tmp_path / "b" / "pids.json"  # an older harness: no identity at all
        bare.parent.mkdir()
        bare.write_text(json.dumps({"vllm-router": stranger.pid}))
        outcomes = sweep_recorded([reused, bare])
        assert [o for _, o in outcomes] == ["pid reused"]
        # The same start tick in an earlier boot: a reboot hands out PIDs and ticks afresh.
        before_reboot = ProcessIdentity(now.pid, "another-boot", now.start_ticks, ("vllm",))
        reused.write_text(json.dumps({"vllm-primary": before_reboot.to_dict()}))
        assert [o for _, o in sweep_recorded([reused])] == ["pid reused"]
        assert sweep_recorded([bare])[0][1] == "no identity recorded"
        time.sleep(0.2)
        assert stranger.poll() is None, "the sweep ended a process it did not start"
        # The same record with the true start time is ours: ended.
        reused.write_text(json.dumps({"vllm-primary": now.to_dict()}))
        assert [o for _, o in sweep_recorded([reused])] == ["stopped"]
        assert not group_alive(stranger.pid)
    finally:
        stranger.kill()
        stranger.wait()


def test_a_group_whose_members_all_exited_is_not_alive_before_its_parent_reaps() -> None:
    """Engines another process started and has not reaped yet are zombies: `harness down` from
    a second process counts them as ended instead of waiting and reporting them as running."""
    child = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        assert group_alive(child.pid)
        os.kill(child.pid, 9)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            stat = Path(f"/proc/{child.pid}/stat").read_text()
            if stat[stat.rindex(")") + 2] == "Z":
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the child never became a zombie")
        # The zombie still takes signals, so the plain signal check would call it alive.
        os.killpg(child.pid, 0)
        assert not group_alive(child.pid)
    finally:
        child.kill()
        child.wait()
