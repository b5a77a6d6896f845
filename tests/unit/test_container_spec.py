"""The containers backend's plans, derived from infra/docker-compose.yml; no Docker needed."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness.compose import load_stack
from harness.compose.env_file import read_env_file
from harness.config import Settings
from harness.errors import ConfigError, StackError
from harness.stack.containers.backend import started_at
from harness.stack.containers.logs import LogFollower
from harness.stack.containers.plan import (
    LABEL,
    RUN_LABEL,
    ContainerPlan,
    docker_kwargs,
    gpu_plans,
    interpolate,
    network_name,
    port_bindings,
)
from harness.stack.containers.production import (
    ProdContainer,
    vram_preflight,
)
from harness.telemetry.nvml import GpuProcess, GpuSnapshot
from harness.vram.check import run_check

ROOT = Path(__file__).resolve().parents[2]
FAKE_XAI_KEY = "xai-FAKE-planted-secret-5f3a9c"
FAKE_TUNNEL = "cf-FAKE-tunnel-token-77e1"
FAKE_HF = "hf_FAKE_token_0b9d2e"
RUN = "t3st1d"


@pytest.fixture
def compose_dir(tmp_path: Path) -> Path:
    """The real compose file beside a planted `.secrets`."""
    infra = tmp_path / "infra"
    infra.mkdir()
    shutil.copy(ROOT / "infra" / "docker-compose.yml", infra / "docker-compose.yml")
    (infra / ".secrets").write_text(
        "# planted for the test\n"
        f"XAI_API_KEY={FAKE_XAI_KEY}\n"
        f"export TUNNEL_TOKEN='{FAKE_TUNNEL}'\n"
        "ROUTER_API_KEYS=owner-key-1,owner-key-2\n"
    )
    return infra


@pytest.fixture
def plans(compose_dir: Path) -> dict[str, ContainerPlan]:
    spec = load_stack(compose_dir / "docker-compose.yml")
    out = gpu_plans(spec, RUN, "harness-key-abc123", environ={"HF_TOKEN": FAKE_HF})
    return {p.service: p for p in out}


def test_the_gpu_stack_starts_engines_then_the_router_and_no_edge_by_default(
    compose_dir: Path, plans: dict[str, ContainerPlan]
) -> None:
    assert list(plans) == ["vllm-router", "vllm-primary", "fake-xai", "ai-router"]
    spec = load_stack(compose_dir / "docker-compose.yml")
    edge = gpu_plans(spec, RUN, "k", include_edge=True, environ={})
    assert [p.service for p in edge][-2:] == ["traefik", "cloudflared"]


def test_engines_run_the_compose_image_and_vllm_argv(plans: dict[str, ContainerPlan]) -> None:
    router, primary = plans["vllm-router"], plans["vllm-primary"]
    assert router.image == primary.image == "vllm/vllm-openai:v0.33.0"
    # The image's entrypoint is `vllm serve`: the command starts with the model.
    assert router.command[0] == "Qwen/Qwen2.5-3B-Instruct"
    assert primary.command[:1] == ("Qwen/Qwen3-32B-FP8",)
    for flag, value in (("--max-model-len", "32768"), ("--kv-cache-dtype", "fp8")):
        assert primary.command[primary.command.index(flag) + 1] == value
    assert primary.model_name == "primary"
    assert primary.build_context is None


def test_the_router_image_is_built_from_the_compose_build_context(
    compose_dir: Path, plans: dict[str, ContainerPlan]
) -> None:
    assert plans["ai-router"].image == "ai-router:local"
    assert plans["ai-router"].build_context == str((compose_dir / "ai-router").resolve())


def test_engines_get_one_gpu_device_request_list_and_host_ipc(
    plans: dict[str, ContainerPlan],
) -> None:
    from docker.types import DeviceRequest

    for name in ("vllm-router", "vllm-primary"):
        kw = docker_kwargs(plans[name])
        reqs = kw["device_requests"]
        assert isinstance(reqs, list) and len(reqs) == 1
        assert isinstance(reqs[0], DeviceRequest)
        # As the compose file reserves it: one nvidia GPU, not every GPU of the box.
        assert reqs[0]["Count"] == 1 and reqs[0]["Capabilities"] == [["gpu"]]
        assert reqs[0]["Driver"] == "nvidia"
        assert kw["ipc_mode"] == "host"
    router_kw = docker_kwargs(plans["ai-router"])
    assert "device_requests" not in router_kw and "ipc_mode" not in router_kw


def test_shm_size_is_passed_when_the_compose_file_sets_it(compose_variant: Any) -> None:
    def mutate(doc: dict[str, Any]) -> None:
        del doc["services"]["vllm-router"]["ipc"]
        doc["services"]["vllm-router"]["shm_size"] = "8gb"
        doc["services"]["ai-router"].pop("env_file")

    spec = load_stack(compose_variant(mutate))
    kw = docker_kwargs(gpu_plans(spec, RUN, "k", environ={})[0])
    assert kw["shm_size"] == "8gb" and "ipc_mode" not in kw


def test_the_hf_cache_is_the_projects_volume_and_other_volumes_are_per_run(
    plans: dict[str, ContainerPlan],
) -> None:
    for name in ("vllm-router", "vllm-primary"):
        hf, compiled = plans[name].mounts
        assert (hf.source, hf.target) == ("ai-stack_hf-cache", "/root/.cache/huggingface")
        assert (compiled.source, compiled.target) == ("ai-stack_vllm-cache", "/root/.cache/vllm")
        assert not hf.read_only and plans[name].run_volumes == ()
    (logs,) = plans["ai-router"].mounts
    assert logs.source == f"harness-{RUN}-router-logs"
    assert plans["ai-router"].run_volumes == (logs.source,)


def test_ports_are_loopback_and_ephemeral_names_prefixed_labels_set(
    compose_dir: Path, plans: dict[str, ContainerPlan]
) -> None:
    spec = load_stack(compose_dir / "docker-compose.yml")
    for plan in plans.values():
        assert plan.name == f"harness-{RUN}-{plan.service}"
        assert plan.service in plan.aliases  # compose URLs like http://vllm-router:8000 resolve
        assert plan.labels[LABEL] == "1" and plan.labels[RUN_LABEL] == RUN
        assert docker_kwargs(plan)["labels"] == dict(plan.labels)
        for binding in port_bindings(plan).values():
            assert binding == ("127.0.0.1", None)
    assert port_bindings(plans["vllm-router"]) == {"8000/tcp": ("127.0.0.1", None)}
    assert port_bindings(plans["vllm-router"], {8000: 41234}) == {"8000/tcp": ("127.0.0.1", 41234)}
    assert network_name(RUN, spec) == f"harness-{RUN}-ai-network"


def test_health_comes_from_the_compose_healthcheck(plans: dict[str, ContainerPlan]) -> None:
    assert (plans["vllm-router"].health_port, plans["vllm-router"].health_path) == (8000, "/health")
    assert plans["vllm-router"].startup_budget_s == 600 + 3 * (10 + 5)
    assert plans["vllm-primary"].startup_budget_s == 1200 + 3 * (10 + 5)
    assert (plans["ai-router"].health_port, plans["ai-router"].startup_budget_s) == (8080, 75)


def test_secrets_reach_the_container_but_never_the_rendered_command(
    compose_dir: Path, plans: dict[str, ContainerPlan]
) -> None:
    spec = load_stack(compose_dir / "docker-compose.yml")
    paid = gpu_plans(spec, RUN, "harness-key-abc123", environ={}, real_xai=True)
    router = {p.service: p for p in paid}["ai-router"]
    # Only a run that asked for the real xAI (--harness-xai) hands the owner's key on.
    assert router.environment["XAI_API_KEY"] == FAKE_XAI_KEY
    assert plans["ai-router"].environment["XAI_API_KEY"] != FAKE_XAI_KEY
    # The harness's own key replaces the owner's, so the harness can call the router.
    assert router.environment["ROUTER_API_KEYS"] == "harness-key-abc123"
    assert router.environment["ROUTER_CLASSIFIER_URL"] == "http://vllm-router:8000"
    assert plans["vllm-router"].environment["HF_TOKEN"] == FAKE_HF
    for plan in [*plans.values(), router]:
        text = plan.render() + repr(plan)
        for secret in (FAKE_XAI_KEY, FAKE_TUNNEL, FAKE_HF, "harness-key-abc123", "owner-key-1"):
            assert secret not in text
    assert "XAI_API_KEY=***" in router.render()
    assert "HF_TOKEN=***" in plans["vllm-router"].render()


def test_an_inline_secret_is_read_from_the_file_and_masked(compose_variant: Any) -> None:
    def mutate(doc: dict[str, Any]) -> None:
        doc["services"]["ai-router"].pop("env_file")
        doc["services"]["ai-router"]["environment"]["XAI_API_KEY"] = "inline-FAKE-secret-91"

    spec = load_stack(compose_variant(mutate))
    assert spec.services["ai-router"].environment["XAI_API_KEY"] == "***"  # the spec masks it
    paid = gpu_plans(spec, RUN, "k", environ={}, real_xai=True)
    router = {p.service: p for p in paid}["ai-router"]
    assert router.environment["XAI_API_KEY"] == "inline-FAKE-secret-91"
    assert "inline-FAKE-secret-91" not in router.render()


def test_a_missing_env_file_names_itself(tmp_path: Path) -> None:
    (tmp_path / "docker-compose.yml").write_text((ROOT / "infra/docker-compose.yml").read_text())
    spec = load_stack(tmp_path / "docker-compose.yml")
    with pytest.raises(ConfigError, match=r"\.secrets does not exist"):
        gpu_plans(spec, RUN, "k", environ={})


def test_interpolation_follows_compose() -> None:
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate("${SET}/${MISSING:-d}/${EMPTY:-e}/${EMPTY-f}/$$x/$SET", env, "w") == (
        "v/d/e//$x/v"
    )
    with pytest.raises(ConfigError, match="NEEDED"):
        interpolate("${NEEDED:?set it}", env, "w")


def test_env_files_read_like_compose(tmp_path: Path) -> None:
    f = tmp_path / "env"
    f.write_text("# c\nA=1\nexport B=two\nC='q u'\nD=\"dq\"\nE=x # note\n\nnoequals\n")
    assert read_env_file(f) == {"A": "1", "B": "two", "C": "q u", "D": "dq", "E": "x"}


class FakeStream:
    def __init__(self, chunks: list[bytes]) -> None:
        self._it = iter(chunks)

    def __iter__(self) -> Iterator[bytes]:
        return self._it

    def close(self) -> None:
        pass


def test_streamed_logs_mask_secrets_even_when_split_across_chunks(tmp_path: Path) -> None:
    secret = FAKE_XAI_KEY
    chunks = [b"starting\nkey=" + secret[:6].encode(), secret[6:].encode() + b" loaded\nlast"]
    container = SimpleNamespace(logs=lambda stream, follow: FakeStream(chunks))
    log = tmp_path / "logs" / "ai-router.log"
    follower = LogFollower(container, log, (secret,))
    follower.start()
    follower.finish()
    text = log.read_text()
    assert secret not in text
    assert text == "starting\nkey=*** loaded\nlast\n"


def test_docker_start_timestamps_parse_with_nanoseconds() -> None:
    c = SimpleNamespace(attrs={"State": {"StartedAt": "2025-05-20T10:11:12.123456789Z"}})
    assert started_at(c) == pytest.approx(1747735872.123456)
    assert (
        started_at(SimpleNamespace(attrs={"State": {"StartedAt": "0001-01-01T00:00:00Z"}})) is None
    )


# -- the production stack and the GPU's free memory ----------------------------------------


class FakeContainer:
    def __init__(self, name: str, labels: dict[str, str], log: list[str]) -> None:
        self.id = name + "-id"
        self.name = name
        self.labels = labels
        self.attrs: dict[str, Any] = {"State": {"Status": "running", "Running": True}}
        self._log = log

    def stop(self, timeout: int = 10) -> None:
        self._log.append(f"stop {self.name}")

    def start(self) -> None:
        self._log.append(f"start {self.name}")
        self.attrs["State"] = {
            "Status": "running",
            "Running": True,
            "Health": {"Status": "healthy"},
        }

    def reload(self) -> None:
        pass


class FakeClient:
    def __init__(self, items: list[FakeContainer]) -> None:
        by_id = {c.id: c for c in items}
        self.containers = SimpleNamespace(list=lambda filters=None: items, get=by_id.__getitem__)


def test_vram_preflight_names_the_containers_that_hold_memory() -> None:
    result = run_check(ROOT / "infra" / "docker-compose.yml", Settings(path=None, environ={}))
    total = 96 * 2**30
    held = GpuProcess(4242, 40 * 2**30, "c0ffee" * 10 + "abcd")
    snap = GpuSnapshot(0, "Test GPU", total, 40 * 2**30, 56 * 2**30, None, None, (held,))
    name = SimpleNamespace(name="someone-elses-vllm")
    client = SimpleNamespace(containers=SimpleNamespace(get=lambda cid: name))
    with pytest.raises(StackError, match="someone-elses-vllm") as err:
        vram_preflight(client, result.plan, print, snapshot=lambda: snap)
    assert "pid 4242" in str(err.value) and "--harness-target attach" in str(err.value)
    free = GpuSnapshot(0, "Test GPU", total, 0, total, None, None, ())
    vram_preflight(client, result.plan, print, snapshot=lambda: free)  # enough: no error


def test_refusal_suggests_attach() -> None:
    from harness.stack.containers.production import refusal

    spec = load_stack(ROOT / "infra" / "docker-compose.yml")
    err = refusal(spec, [ProdContainer("id", "vllm-router", "vllm-router")])
    assert "--harness-target attach" in str(err) and "--harness-replace-running" in str(err)


def test_capability_probe_says_why_without_an_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.stack.containers.backend import container_capability

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    start = time.monotonic()
    why = container_capability(gpu=True)
    assert why is not None and "Docker engine" in why
    assert time.monotonic() - start < 15


def test_sweep_removes_labelled_containers_in_reverse_start_order_then_networks_and_volumes() -> (
    None
):
    from harness.stack.containers.backend import sweep

    log: list[str] = []
    seen_filters: list[Any] = []

    def item(name: str, order: str | None = None) -> Any:
        labels = {LABEL: "1", **({"ai-router-harness.order": order} if order else {})}
        return SimpleNamespace(
            name=name,
            labels=labels,
            stop=lambda timeout=10: log.append(f"stop {name}"),
            remove=lambda **kw: log.append(f"remove {name}"),
        )

    def lister(items: list[Any]) -> Any:
        def list_(all: bool = False, filters: Any = None) -> list[Any]:
            seen_filters.append(filters)
            return items

        return list_

    client = SimpleNamespace(
        containers=SimpleNamespace(list=lister([item("a", "0"), item("c", "2"), item("b", "1")])),
        networks=SimpleNamespace(list=lister([item("net")])),
        volumes=SimpleNamespace(list=lister([item("vol")])),
    )
    removed = sweep("r1", client=client, progress=lambda s: None)
    assert [e for e in log if e.startswith("stop")] == ["stop c", "stop b", "stop a"]
    assert removed == ["container c", "container b", "container a", "network net", "volume vol"]
    assert all(f == {"label": [f"{LABEL}=1", f"{RUN_LABEL}=r1"]} for f in seen_filters)


def test_capability_probe_names_a_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU box with torch and NVML but without the harness's [gpu] extra: a reason, not a
    ModuleNotFoundError (seen on the device machine)."""

    from harness.stack.containers.backend import container_capability

    monkeypatch.setitem(sys.modules, "testcontainers", None)  # import raises ImportError
    why = container_capability(gpu=True)
    assert why is not None and "testcontainers" in why and "[gpu]" in why
