"""Checks that run inside a pytest session on the emulated GPU (`--harness-target twin-docker`),
beside the contract tests and the steady profile: test_twin_docker.py starts that session.

Not collected on its own (no `test_` prefix): it needs the session's stack to be the emulated
GPU, which the parent test asks for.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from harness.stack.containers.base_image import BASE_IMAGE
from harness.stack.containers.ingress import run_constraint
from harness.stack.containers.plan import LABEL, network_name

ORDER = ["vllm-router", "vllm-primary", "fake-xai", "ai-router", "traefik"]


@pytest.fixture(scope="module")
def emulated(stack: Any, stack_backend: Any) -> Any:
    assert stack.target == "twin-docker", (
        f"run with --harness-target twin-docker, not {stack.target}"
    )
    return stack_backend


def test_the_gpu_plans_come_up_as_five_containers_in_order(stack: Any, emulated: Any) -> None:
    assert list(stack.services) == ORDER
    for name, handle in stack.services.items():
        attrs = emulated.container(name).attrs
        assert attrs["Config"]["Labels"][LABEL] == "1"
        assert attrs["Name"] == f"/harness-{emulated.run_id}-{name}"
        assert attrs["Config"]["Image"] == BASE_IMAGE
        bindings = [b for v in attrs["NetworkSettings"]["Ports"].values() for b in v or []]
        assert bindings and all(b["HostIp"] == "127.0.0.1" for b in bindings), name
        assert handle.url.startswith("http://127.0.0.1:") and handle.container_id == attrs["Id"]
        assert not attrs["HostConfig"].get("DeviceRequests"), f"{name} asks for a GPU"
    # Each service started (docker's own State.StartedAt) only after the previous one was
    # healthy: the router engine before the primary, the primary before the ai-router.
    handles = list(stack.services.values())
    for prev, nxt in itertools.pairwise(handles):
        assert prev.healthy_at is not None and nxt.started_at is not None
        assert prev.healthy_at <= nxt.started_at, f"{nxt.name} started before {prev.name} was up"


def test_the_run_names_every_substitution_it_made(stack: Any, emulated: Any) -> None:
    made = {(s.name, s.service) for s in emulated.substitutions}
    for name in ("vllm-router", "vllm-primary"):
        for sub in ("image", "model", "gpu-device", "gpu-flags", "kv-dtype", "kv-capacity"):
            assert (sub, name) in made, f"{sub} on {name} was not recorded"
    assert ("image", "ai-router") in made and ("nvml", "preflight") in made
    assert {("ingress-binary", "traefik"), ("ingress-network", "traefik")} <= made
    assert ("tunnel", "cloudflared") in made
    printed = [n for n in stack.notes if n.startswith("substitution ")]
    assert len(printed) == len(emulated.substitutions)


def test_the_engines_run_the_compose_command_under_the_twin_model(
    stack: Any, emulated: Any
) -> None:
    for svc in stack.engines:
        cmd = emulated.container(svc.name).attrs["Config"]["Cmd"]
        compose = list(stack.spec.services[svc.name].command)
        assert (
            cmd[cmd.index("--max-model-len") + 1] == compose[compose.index("--max-model-len") + 1]
        )
        assert cmd[cmd.index("--served-model-name") + 1] == svc.model_name
        assert "--gpu-memory-utilization" not in cmd and "--num-gpu-blocks-override" in cmd


def test_the_router_key_is_masked_in_every_log(stack: Any) -> None:
    for log in (stack.run_dir / "logs").glob("*.log"):
        assert stack.api_key not in log.read_text(errors="replace"), log.name


def test_clients_enter_through_traefik_which_reads_only_this_runs_containers(
    stack: Any, emulated: Any
) -> None:
    assert stack.entry.name == "traefik" and stack.entry.role == "proxy"
    attrs = emulated.container("traefik").attrs
    args = attrs["Args"]
    net = network_name(emulated.run_id, stack.spec)
    assert f"--providers.docker.network={net}" in args
    assert f"--providers.docker.constraints={run_constraint(emulated.run_id)}" in args
    assert "--providers.docker.exposedbydefault=false" in args
    socket = [m for m in attrs["Mounts"] if m["Destination"] == "/var/run/docker.sock"]
    assert len(socket) == 1 and socket[0]["RW"] is False
    for name in ("traefik", "ai-router"):
        assert net in emulated.container(name).attrs["NetworkSettings"]["Networks"], name
