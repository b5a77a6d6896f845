"""The containers backend on a real Docker engine: the emulated GPU (`twin-docker`).

This is the proof, without a GPU, that the code path `pytest -m gpu` uses works: the gpu
target's own plans, with only the named substitutions, brought up in order and health-gated
(docker's own start timestamps), the contract tests and the steady profile through the
containerised ai-router, fail-fast on a container that dies, and nothing labelled left behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness.errors import CapabilityError, StartupError
from harness.stack.containers.backend import ContainersBackend, container_capability, docker_client
from harness.stack.containers.base_image import BASE_IMAGE, ensure_base_image
from harness.stack.containers.emulate import host_mounts
from harness.stack.containers.plan import LABEL, RUN_LABEL, ContainerPlan, run_labels
from harness.twin.engines import TwinModelDirs

# The first bring-up may build the twin models and the base image before ~4 min of startup.
pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "infra" / "docker-compose.yml"
ORDER = ["vllm-router", "vllm-primary", "fake-xai", "ai-router"]


@pytest.fixture(scope="module")
def docker_ready() -> Any:
    why = container_capability(gpu=False)
    if why:
        pytest.skip(f"no Docker engine: {why}")
    try:
        ensure_base_image()
    except CapabilityError as exc:
        pytest.skip(f"the base image {BASE_IMAGE} is missing and cannot be built: {exc}")
    return docker_client()


def leftovers(client: Any, run_id: str | None) -> list[str]:
    """What carries the harness label (of one run, or of any run when `run_id` is None)."""
    labels = [f"{LABEL}=1", *([f"{RUN_LABEL}={run_id}"] if run_id else [])]
    wanted = {"label": labels}
    return (
        [f"container {c.name}" for c in client.containers.list(all=True, filters=wanted)]
        + [f"network {n.name}" for n in client.networks.list(filters=wanted)]
        + [f"volume {v.name}" for v in client.volumes.list(filters=wanted)]
    )


def test_the_emulated_gpu_passes_the_contract_tests_and_steady(
    docker_ready: Any, tmp_path: Path
) -> None:
    """The gpu target's plans and bring-up, with the named substitutions, in a pytest session of
    its own: the contract tests and the steady profile pass through the containerised stack."""
    from harness.stack.factory import twin_capability

    why = twin_capability()
    if why:
        pytest.skip(f"the CPU twin cannot run: {why}")
    select = [
        "tests/docker/emulated_stack_checks.py",
        "tests/acceptance/test_contracts.py",
        "tests/load/test_profiles.py::test_chat_profiles[steady]",
    ]
    env = {**os.environ, "HARNESS_REPORTS_DIR": str(tmp_path)}
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", "--tb=short"]
    proc = subprocess.run(
        [*argv, "--harness-target", "twin-docker", *select],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    out = proc.stdout + proc.stderr
    print(out[-6000:])
    assert proc.returncode == 0, f"the emulated GPU session failed (rc {proc.returncode})"
    passed = re.search(r"(\d+) passed", out)
    assert passed and int(passed.group(1)) >= 13, "the contract tests and steady did not all run"
    assert "substitution image: vllm-router: vllm/vllm-openai:" in out
    assert "PASSED tests/load/test_profiles.py::test_chat_profiles[steady]" in out
    assert leftovers(docker_ready, None) == [], "the session left harness containers behind"


class DyingBackend(ContainersBackend):
    """One service in the base image that prints a few lines and exits during startup."""

    def plans(self, api_key: str = "") -> list[ContainerPlan]:
        script = "import sys, time; print('loading'); print('fatal: boom at startup'); sys.exit(3)"
        mounts = host_mounts(self.spec, TwinModelDirs(ROOT, ROOT), self.run_dir / "logs")
        return [
            ContainerPlan(
                service="doomed",
                role="classifier",
                name=f"harness-{self.run_id}-doomed",
                image=BASE_IMAGE,
                command=(sys.executable, "-c", script),
                mounts=mounts,
                ports=(8000,),
                health_port=8000,
                startup_budget_s=600,
                labels=run_labels(self.run_id),
            )
        ]


def test_a_container_that_exits_fails_the_bring_up_within_seconds(
    docker_ready: Any, tmp_path: Path
) -> None:
    from harness.spec import load_stack

    (tmp_path / "logs").mkdir()
    backend = DyingBackend(load_stack(COMPOSE), tmp_path, target="twin-docker")
    start = time.monotonic()
    with pytest.raises(StartupError) as err:
        backend.up()
    took = time.monotonic() - start
    assert took < 30, f"took {took:.0f} s against a 600 s budget"
    assert "exited with code 3" in str(err.value)
    assert "fatal: boom at startup" in err.value.log_tail
    assert leftovers(docker_ready, backend.run_id) == []
    backend.down()  # after a failed bring-up's own teardown: twice is harmless


def test_harness_down_sweep_removes_what_an_interrupted_run_left(
    docker_ready: Any, tmp_path: Path
) -> None:
    run_id = "sweeptest" + os.urandom(3).hex()
    labels = run_labels(run_id)
    net = docker_ready.networks.create(f"harness-{run_id}-net", labels=labels)
    left = docker_ready.containers.run(
        BASE_IMAGE, ["sleep", "300"], name=f"harness-{run_id}-orphan", labels=labels,
        network=net.name, detach=True,
    )  # fmt: skip
    try:
        assert len(leftovers(docker_ready, run_id)) == 2
        env = {**os.environ, "HARNESS_STATE_DIR": str(tmp_path)}  # no stack recorded as up
        harness = [str(Path(sys.executable).with_name("harness")), "down", "--sweep"]
        done = subprocess.run(harness, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "removed" in done.stdout
        assert leftovers(docker_ready, run_id) == []
    finally:
        for cleanup in (lambda: left.remove(force=True), net.remove):
            with contextlib.suppress(Exception):
                cleanup()
