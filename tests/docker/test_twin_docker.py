"""The containers backend on a real Docker engine: the CPU twin as containers (`twin-docker`).

This is the proof, without a GPU, that the code path `pytest -m gpu` uses works: order and
health gating from docker's own start timestamps, a request through the containerised ai-router,
fail-fast on a container that dies, and nothing labelled left behind.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.config import Settings
from harness.errors import CapabilityError, StartupError
from harness.stack.base import Stack
from harness.stack.base_image import BASE_IMAGE, ensure_base_image
from harness.stack.container_spec import LABEL, RUN_LABEL, ContainerPlan, run_labels
from harness.stack.emulate import host_mounts
from harness.stack.containers import ContainersBackend, container_capability, docker_client
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


def leftovers(client: Any, run_id: str) -> list[str]:
    wanted = {"label": [f"{LABEL}=1", f"{RUN_LABEL}={run_id}"]}
    return (
        [f"container {c.name}" for c in client.containers.list(all=True, filters=wanted)]
        + [f"network {n.name}" for n in client.networks.list(filters=wanted)]
        + [f"volume {v.name}" for v in client.volumes.list(filters=wanted)]
    )


@dataclass
class Up:
    backend: ContainersBackend
    stack: Stack
    inspected: dict[str, dict[str, Any]]  # docker inspect of each container while it ran
    up_s: float


@pytest.fixture(scope="module")
def twin_docker(docker_ready: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    from harness.stack.container_factory import make_containers_backend
    from harness.stack.factory import twin_capability

    why = twin_capability()
    if why:
        pytest.skip(f"the CPU twin cannot run: {why}")
    run_dir = tmp_path_factory.mktemp("twin-docker-run")
    (run_dir / "logs").mkdir(exist_ok=True)
    backend = make_containers_backend(
        "twin-docker", COMPOSE, Settings(path=None, environ={}), run_dir
    )
    start = time.monotonic()
    stack = backend.up()
    try:
        up_s = time.monotonic() - start
        inspected = {name: backend.container(name).attrs for name in stack.services}
        yield Up(backend, stack, inspected, up_s)
    finally:
        backend.down()


def test_the_twin_comes_up_as_four_containers_in_order(twin_docker: Up) -> None:
    stack = twin_docker.stack
    assert list(stack.services) == ORDER
    for name, handle in stack.services.items():
        attrs = twin_docker.inspected[name]
        assert attrs["Config"]["Labels"][LABEL] == "1"
        assert attrs["Name"] == f"/harness-{twin_docker.backend.run_id}-{name}"
        assert attrs["Config"]["Image"] == BASE_IMAGE
        bindings = [b for v in attrs["NetworkSettings"]["Ports"].values() for b in v or []]
        assert bindings and all(b["HostIp"] == "127.0.0.1" for b in bindings)
        assert handle.url.startswith("http://127.0.0.1:") and handle.container_id == attrs["Id"]
    # Each service started (docker's own State.StartedAt) only after the previous one was
    # healthy: the router engine before the primary, the primary before the ai-router.
    handles = list(stack.services.values())
    for prev, nxt in itertools.pairwise(handles):
        assert prev.healthy_at is not None and nxt.started_at is not None
        assert prev.healthy_at <= nxt.started_at, f"{nxt.name} started before {prev.name} was up"
    print(
        f"\ntwin-docker up in {twin_docker.up_s:.0f} s: "
        + ", ".join(f"{h.name} {h.time_to_healthy_s:.0f} s" for h in handles)
    )


def test_chat_through_the_containerised_router(twin_docker: Up) -> None:
    import openai

    stack = twin_docker.stack
    client = openai.OpenAI(base_url=stack.router.url + "/v1", api_key=stack.api_key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="ai-router",
        messages=[{"role": "user", "content": "Write a Python function that reverses a string."}],
        max_tokens=16,
    )
    assert raw.headers["X-Route"] in ("local", "search")
    completion = raw.parse()
    assert completion.choices and completion.choices[0].message.role == "assistant"
    for headers in ({}, {"Authorization": "Bearer wrong-key"}):
        r = httpx.post(
            stack.router.url + "/v1/chat/completions",
            headers=headers,
            json={"model": "ai-router", "messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        )
        assert r.status_code == 401
    # The api key the router got is masked in every log the run wrote.
    for log in (stack.run_dir / "logs").glob("*.log"):
        assert stack.api_key not in log.read_text(errors="replace"), log.name


def test_down_leaves_nothing_labelled(twin_docker: Up, docker_ready: Any) -> None:
    twin_docker.backend.down()
    assert leftovers(docker_ready, twin_docker.backend.run_id) == []
    twin_docker.backend.down()  # twice is harmless


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


def test_harness_down_sweep_removes_what_an_interrupted_run_left(
    docker_ready: Any, tmp_path: Path
) -> None:
    import os
    import subprocess

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
