"""The containers backend on a real Docker engine: the emulated GPU (`twin-docker`).

This is the proof, without a GPU, that the code path `pytest -m gpu` uses works: the gpu
target's own plans, with only the named substitutions, brought up in order and health-gated
(docker's own start timestamps), the contract tests and the steady profile through the
containerised ai-router, fail-fast on a container that dies, and nothing labelled left behind.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness.errors import CapabilityError, StartupError
from harness.stack.containers.backend import (
    ContainersBackend,
    container_capability,
    docker_client,
    started_at,
)
from harness.stack.containers.base_image import BASE_IMAGE, ensure_base_image
from harness.stack.containers.emulate import host_mounts
from harness.stack.containers.plan import LABEL, RUN_LABEL, ContainerPlan, run_labels
from harness.twin.engines import TwinModelDirs

# The first bring-up may build the twin models and the base image before ~4 min of startup.
pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "infra" / "docker-compose.yml"
ORDER = ["vllm-router", "vllm-primary", "fake-xai", "ai-router", "traefik"]
GPU_HOST_VENV = ".venv-gpu-host"
# What the twin's install has and the GPU box's does not; the harness must not need any of them.
TWIN_ONLY = ("vllm", "torch", "tokenizers", "safetensors")
# A production-shaped compose project: what `--harness-replace-running` replaces (traefik too:
# the run starts its own, and production's docker provider would read the run's labels), and
# the tunnel, which keeps running.
REPLACED = ("vllm-router", "vllm-primary", "ai-router", "traefik")
PROD_SERVICES = (*REPLACED, "cloudflared")
# The ingress checks, each of which must pass through the run's traefik, none skip.
INGRESS_TESTS = 7
STANDIN_READY_S = 2.0
# Healthy STANDIN_READY_S after each start (the marker file is removed first), and stopped
# within a second of SIGTERM.
STANDIN_SCRIPT = (
    f"trap 'exit 0' TERM; rm -f /tmp/ready; sleep {STANDIN_READY_S:.0f}; touch /tmp/ready; "
    "i=0; while [ $i -lt 3600 ]; do sleep 1; i=$((i+1)); done"
)


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


def compose_labels(project: str, **more: str) -> dict[str, str]:
    return {"com.docker.compose.project": project, **more}


def production_leftovers(client: Any, project: str) -> list[str]:
    wanted = {"label": [f"com.docker.compose.project={project}"]}
    return [c.name for c in client.containers.list(all=True, filters=wanted)] + [
        v.name for v in client.volumes.list(filters=wanted)
    ]


def start_production_standins(client: Any, project: str) -> dict[str, Any]:
    """One container per production service, labelled as `docker compose` labels them, with a
    healthcheck, started in the compose order, each after the one before is healthy."""
    out: dict[str, Any] = {}
    second = 1_000_000_000
    for name in PROD_SERVICES:
        labels = compose_labels(project, **{"com.docker.compose.service": name})
        c = client.containers.run(
            BASE_IMAGE, ["sh", "-c", STANDIN_SCRIPT], name=f"{project}-standin-{name}",
            labels=labels, detach=True,
            healthcheck={"test": ["CMD-SHELL", "test -f /tmp/ready"], "interval": second // 2,
                         "timeout": second, "retries": 3, "start_period": 0},
        )  # fmt: skip
        out[name] = c
        deadline = time.monotonic() + 60
        while (c.attrs["State"].get("Health") or {}).get("Status") != "healthy":
            assert time.monotonic() < deadline, f"the {name} stand-in never became healthy"
            time.sleep(0.5)
            c.reload()
    return out


def started(container: Any) -> float:
    container.reload()
    stamp = started_at(container)
    assert stamp is not None, container.name
    return stamp


def leftovers(client: Any, run_id: str | None) -> list[str]:
    """What carries the harness label (of one run, or of any run when `run_id` is None)."""
    labels = [f"{LABEL}=1", *([f"{RUN_LABEL}={run_id}"] if run_id else [])]
    wanted = {"label": labels}
    return (
        [f"container {c.name}" for c in client.containers.list(all=True, filters=wanted)]
        + [f"network {n.name}" for n in client.networks.list(filters=wanted)]
        + [f"volume {v.name}" for v in client.volumes.list(filters=wanted)]
    )


def gpu_host_python() -> Path:
    """The GPU-box install (`make install-gpu VENV=.venv-gpu-host`, what `make test` makes): the
    core dependencies only, as the owner's box has them."""
    python = ROOT / GPU_HOST_VENV / "bin" / "python"
    if not python.is_file():
        why = (
            f"no GPU-box install at {python.parent.parent} (make install-gpu VENV={GPU_HOST_VENV})"
        )
        if os.environ.get("HARNESS_REQUIRE_DOCKER") == "1":
            pytest.fail(why)
        pytest.skip(why)
    return python


def test_the_emulated_gpu_from_a_gpu_box_install_replaces_and_restores_production(
    docker_ready: Any, tmp_path: Path
) -> None:
    """The gpu target's plans and bring-up, with the named substitutions, in a pytest session of
    its own run from a GPU-box install, while a production-shaped `ai-stack` project runs:
    - the harness has only the core dependencies (no vllm, torch or tokenizers), no HF cache and
      no twin build; the engines' weights (the twin's models) are only in the compose project's
      HF cache volume, where the bring-up's prefetch check reads them;
    - the contract tests, the ingress checks, the classifier band (predicted from the engines'
      own /tokenize) and the steady profile pass through the containerised stack, entered
      through the compose file's traefik;
    - `--harness-replace-running` stops exactly the engines, the ai-router and traefik, leaves
      cloudflared running, and restores them in start order, each gated on its healthcheck; the
      marker goes.
    """
    from harness.compose import load_stack
    from harness.stack.containers.twin_weights import TWIN_RUNTIME_ENV, seed_volume
    from harness.stack.factory import twin_capability, twin_models

    why = twin_capability()
    if why:
        pytest.skip(f"the CPU twin cannot run: {why}")
    python = gpu_host_python()
    # The host's shape, checked: what only the twin's install has is absent.
    probe = "import importlib.util as u; print([m for m in TWIN_ONLY if u.find_spec(m)])"
    found = subprocess.run(
        [str(python), "-c", f"TWIN_ONLY = {TWIN_ONLY!r}; {probe}"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.strip()  # fmt: skip
    assert found == "[]", f"the GPU-box install has twin-only packages: {found}"
    spec = load_stack(COMPOSE)
    taken = production_leftovers(docker_ready, spec.project)
    if taken:
        pytest.skip(f"this machine has a real {spec.project!r} project ({taken}); not touching it")
    state, empty = tmp_path / "state", tmp_path / "empty"
    state.mkdir()
    empty.mkdir()
    standins: dict[str, Any] = {}
    try:
        seed_volume(docker_ready, spec, twin_models(), labels=compose_labels(spec.project))
        standins = start_production_standins(docker_ready, spec.project)
        before = {name: started(c) for name, c in standins.items()}
        select = [
            "tests/docker/emulated_stack_checks.py",
            "tests/acceptance/test_contracts.py",
            "tests/acceptance/test_ingress.py",
            "tests/acceptance/test_long_context.py::test_the_band_matches_harness_check",
            "tests/load/test_profiles.py::test_chat_profiles[steady]",
        ]
        env = {k: v for k, v in os.environ.items() if k != "HARNESS_TWIN_MODELS"}
        env |= {
            "HARNESS_REPORTS_DIR": str(tmp_path / "reports"),
            "HARNESS_STATE_DIR": str(state),
            TWIN_RUNTIME_ENV: sys.executable,  # the engines' interpreter: the image substitution
            "HF_HOME": str(empty / "hf"),  # no weights or tokenizer files outside the volume
            "HARNESS_TWIN_CACHE": str(empty / "twin"),  # no twin build either
            "HARNESS_REQUIRE_TWIN": "0",  # the twin's packages are the runtime's, not the host's
        }
        argv = [str(python), "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", "--tb=short"]
        proc = subprocess.run(
            [*argv, "--harness-target", "twin-docker", "--harness-replace-running", *select],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500,
        )  # fmt: skip
        out = proc.stdout + proc.stderr
        print(out[-8000:])
        assert proc.returncode == 0, f"the emulated GPU session failed (rc {proc.returncode})"
        passed = re.search(r"(\d+) passed", out)
        assert passed and int(passed.group(1)) >= 14 + INGRESS_TESTS, (
            "the emulated GPU's tests did not all run"
        )
        ingress = re.findall(r"^PASSED tests/acceptance/test_ingress\.py::", out, re.M)
        assert len(ingress) == INGRESS_TESTS, "the ingress checks did not all pass through traefik"
        # One console line for the substitutions; every one of them is in the record's notes.
        assert re.search(r"\b\d+ named substitutions, see the report", out)
        assert "PASSED tests/load/test_profiles.py::test_chat_profiles[steady]" in out
        assert "PASSED tests/acceptance/test_long_context.py::test_the_band" in out
        assert leftovers(docker_ready, None) == [], "the session left harness containers behind"
        check_production_restored(standins, before, out, state)
        check_the_record_says_what_ran(tmp_path / "reports", docker_ready)
    finally:
        for c in standins.values():
            with contextlib.suppress(Exception):
                c.remove(force=True)
        with contextlib.suppress(Exception):
            docker_ready.volumes.get(f"{spec.project}_hf-cache").remove(force=True)


def check_the_record_says_what_ran(reports: Path, client: Any) -> None:
    """Each engine's vLLM version (its own /version) and each container's image ID."""
    records = sorted(reports.glob("runs/*/record.json"))
    assert len(records) == 1, f"expected one run record under {reports}: {records}"
    stack = json.loads(records[0].read_text())["stack"]
    image = "substitution image: vllm-router: vllm/vllm-openai:"
    assert any(note.startswith(image) for note in stack["notes"]), stack["notes"]
    from vllm.version import __version__  # the twin's runtime is the engines' interpreter

    for engine in ("vllm-router", "vllm-primary"):
        assert stack["versions"][engine] == {"version": __version__, "error": None}
    base_id = client.images.get(BASE_IMAGE).id
    assert set(stack["image_ids"]) == set(ORDER)
    assert set(stack["image_ids"].values()) == {base_id}, stack["image_ids"]


def check_production_restored(
    standins: dict[str, Any], before: dict[str, float], out: str, state: Path
) -> None:
    for c in standins.values():
        c.reload()
    after = {name: started(c) for name, c in standins.items()}
    health = {
        name: (c.attrs["State"].get("Health") or {}).get("Status") for name, c in standins.items()
    }
    replaced = [s for s in PROD_SERVICES if after[s] > before[s]]
    assert replaced == list(REPLACED), (
        f"restarted: {replaced}; the run must stop and restore exactly {list(REPLACED)}"
    )
    for name in PROD_SERVICES:
        assert standins[name].status == "running", f"{name} is {standins[name].status}"
        assert health[name] == "healthy", f"{name}: {health[name]} after the run"
        stopped = f"stopping production container {standins[name].name}" in out
        assert stopped == (name in REPLACED), f"{name}: stopped {stopped}"
    # Restored in the compose start order, each only after the one before was healthy (a
    # stand-in is healthy 2 s after its start at the earliest).
    for prev, nxt in itertools.pairwise(REPLACED):
        gap = after[nxt] - after[prev]
        assert gap >= STANDIN_READY_S, (
            f"{nxt} was restored {gap:.2f} s after {prev}: not gated on {prev}'s health"
        )
    assert not (state / "production-stopped.json").exists(), "the production marker was left"


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
    from harness.compose import load_stack

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
