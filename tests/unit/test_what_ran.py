"""The run record says what ran: each engine's vLLM version (GET /version), each container's
image ID, the ai-router image built from its files on every gpu run before production stops,
the preflight for the card NVML reports, and the compose file's own image and device request
for the GPU probe and the engines."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import docker.errors as docker_errors
import httpx
import pytest
import report_fixtures as fixtures
from docker.types import DeviceRequest

from harness.compose import StackSpec, load_stack, parse_stack
from harness.config import Settings
from harness.errors import CapabilityError, HarnessError, SpecError
from harness.report import stack_facts
from harness.report.compare import CHANGED, OK, compare
from harness.report.compare_render import verdict_line
from harness.report.record import RunRecord
from harness.report.render_md import render_markdown
from harness.report.schema import load_record
from harness.report.stack_facts import (
    VERSION_TIMEOUT_S,
    engine_version,
    preflight_section,
    stack_section,
)
from harness.stack.base import ServiceHandle, Stack
from harness.stack.containers import backend as containers
from harness.stack.containers import factory as containers_factory
from harness.stack.containers.client import container_capability, gpu_probe
from harness.stack.containers.plan import ContainerPlan, docker_kwargs, gpu_plans

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "infra" / "docker-compose.yml"
PINNED = "vllm/vllm-openai:v0.33.0"
GIB = 2**30
ROUTER_ID = "sha256:" + "a1" * 32
PRIMARY_ID = "sha256:" + "b2" * 32


def answering(handler: Any) -> httpx.MockTransport:
    return httpx.MockTransport(handler)


def version_json(request: httpx.Request) -> httpx.Response:
    assert request.url.path == "/version"
    return httpx.Response(200, json={"version": "0.32.0"})


# -- GET /version --------------------------------------------------------------------------------


def test_an_engines_version_is_what_get_version_answers_within_a_bound() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return version_json(request)

    got = engine_version("http://127.0.0.1:41001/", transport=answering(handler))
    assert got == {"version": "0.32.0", "error": None}
    assert seen[0]["read"] == seen[0]["connect"] == VERSION_TIMEOUT_S


def _timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)


@pytest.mark.parametrize(
    ("handler", "reason"),
    [
        (lambda r: httpx.Response(404, json={"detail": "Not Found"}), "HTTP 404"),
        (_timeout, "ReadTimeout"),
        (lambda r: httpx.Response(200, text="<html>proxy</html>"), "not a JSON object"),
        (lambda r: httpx.Response(200, json=["0.32.0"]), "not a JSON object"),
        (lambda r: httpx.Response(200, json={"ver": "0.32.0"}), "has no version"),
    ],
)
def test_no_version_is_none_with_the_reason(handler: Any, reason: str) -> None:
    got = engine_version("http://127.0.0.1:41001", transport=answering(handler))
    assert got["version"] is None
    assert got["error"] is not None and reason in got["error"]
    assert "GET http://127.0.0.1:41001/version" in got["error"]


# -- the record's stack section ------------------------------------------------------------------


def running_stack(spec: StackSpec, tmp_path: Path, image_ids: bool = True) -> Stack:
    stack = Stack("gpu", spec, tmp_path)
    for name, role, port, image_id in (
        ("vllm-router", "classifier", 41001, ROUTER_ID),
        ("vllm-primary", "primary", 41002, PRIMARY_ID),
        ("ai-router", "router", 41004, "sha256:" + "c3" * 32),
    ):
        stack.services[name] = ServiceHandle(
            name, role, f"http://127.0.0.1:{port}", image_id=image_id if image_ids else None
        )
    return stack


def test_the_stack_section_has_each_engines_version_and_each_containers_image_id(
    tmp_path: Path,
) -> None:
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(f"{request.url.port}{request.url.path}")
        if request.url.port == 41002:
            return httpx.Response(404)
        return version_json(request)

    stack = running_stack(load_stack(COMPOSE), tmp_path)
    section = stack_section(stack, transport=answering(handler))
    assert sorted(asked) == ["41001/version", "41002/version"]  # engines only
    assert section["versions"]["vllm-router"] == {"version": "0.32.0", "error": None}
    assert section["versions"]["vllm-primary"]["version"] is None
    assert "HTTP 404" in section["versions"]["vllm-primary"]["error"]
    assert section["image_ids"]["vllm-router"] == ROUTER_ID
    assert section["image_ids"]["ai-router"] == "sha256:" + "c3" * 32
    assert section["images"]["vllm-primary"] == PINNED
    # What the harness writes validates against the published schema.
    record = RunRecord(tmp_path, "gpu")
    for key, value in section.items():
        record.put("stack", key, value)
    record.finish("passed")
    assert load_record(record.path)["stack"]["versions"] == section["versions"]


def test_a_stack_without_containers_has_no_image_ids(tmp_path: Path) -> None:
    stack = running_stack(load_stack(COMPOSE), tmp_path, image_ids=False)
    assert stack_section(stack, transport=answering(version_json))["image_ids"] == {}


def test_a_container_start_records_the_image_the_container_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import testcontainers.core.container as tc

    wrapped = SimpleNamespace(
        id="cid-1",
        attrs={
            "Image": ROUTER_ID,
            "State": {"Status": "running", "StartedAt": ""},
            "NetworkSettings": {"Ports": {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "1"}]}},
        },
        reload=lambda: None,
    )

    class FakeDockerContainer:
        def __init__(self, image: str, **kw: Any) -> None:
            self.ports: Any = {}

        def with_volume_mapping(self, *a: Any) -> None:
            pass

        def with_kwargs(self, **kw: Any) -> None:
            pass

        def start(self) -> None:
            pass

        def get_wrapped_container(self) -> Any:
            return wrapped

    class NoFollower:
        def __init__(self, *a: Any) -> None:
            pass

        def start(self) -> None:
            pass

    monkeypatch.setattr(tc, "DockerContainer", FakeDockerContainer)
    monkeypatch.setattr(containers, "LogFollower", NoFollower)
    monkeypatch.setattr(containers.ContainersBackend, "_wait_ready", lambda self, *a: 2.0)
    spec = load_stack(COMPOSE)
    backend = containers.ContainersBackend(spec, tmp_path, progress=lambda line: None)
    plan = gpu_plans(spec, "r1", "k", environ={}, env_files_required=False)[0]
    stack = Stack("gpu", spec, tmp_path)
    handle = backend._start(stack, plan)
    assert handle.image_id == ROUTER_ID
    assert stack_section(stack, transport=answering(version_json))["image_ids"] == {
        "vllm-router": ROUTER_ID
    }


# -- report.md and compare -----------------------------------------------------------------------


def with_what_ran(doc: dict[str, Any], version: str, primary_id: str) -> dict[str, Any]:
    doc["stack"]["versions"] = {
        "vllm-router": {"version": version, "error": None},
        "vllm-primary": {"version": None, "error": "GET http://x/version: HTTP 404"},
    }
    doc["stack"]["image_ids"] = {"vllm-router": ROUTER_ID, "vllm-primary": primary_id}
    return doc


def test_report_md_says_in_one_line_which_versions_and_images_ran() -> None:
    md = render_markdown(with_what_ran(fixtures.record(), "0.33.0", PRIMARY_ID))
    lines = [line for line in md.splitlines() if line.startswith("Ran: ")]
    assert lines == [
        "Ran: `vllm-router` vLLM 0.33.0, image a1a1a1a1a1a1; "
        "`vllm-primary` vLLM unknown (GET http://x/version: HTTP 404), image b2b2b2b2b2b2"
    ]


def test_a_record_without_them_says_nothing_of_them() -> None:
    assert "Ran: " not in render_markdown(fixtures.record())


def test_compare_shows_a_changed_vllm_version_and_image() -> None:
    base = with_what_ran(fixtures.record(), "0.32.0", PRIMARY_ID)
    cur = with_what_ran(fixtures.record("20261127T062715Z-twin"), "0.33.0", "sha256:" + "d4" * 32)
    rows = {r.metric: r for r in compare(cur, base).rows}
    version = rows["stack.vllm-router.vllm_version"]
    assert (version.baseline, version.current, version.verdict) == ("0.32.0", "0.33.0", CHANGED)
    assert rows["stack.vllm-router.image_id"].verdict == OK
    assert rows["stack.vllm-primary.image_id"].verdict == CHANGED
    line = verdict_line(compare(cur, base))
    assert "changed: stack.vllm-router.vllm_version, stack.vllm-primary.image_id" in line
    assert not compare(cur, base).regression


# -- the preflight for the card NVML reports -----------------------------------------------------


@pytest.mark.parametrize(("target", "total"), [
    ("gpu", 80 * GIB), ("attach", 80 * GIB), ("twin", None), ("twin-docker", None),
])  # fmt: skip
def test_the_preflight_is_for_the_card_nvml_reports_on_gpu_and_attach(
    monkeypatch: pytest.MonkeyPatch, target: str, total: int | None
) -> None:
    from harness.telemetry import nvml

    monkeypatch.setattr(nvml, "total_memory_or_none", lambda index=0: 80 * GIB)
    settings = Settings(path=None, environ={})
    configured = preflight_section(COMPOSE, settings, "twin")["gpu"]["total_bytes"]
    assert configured != 80 * GIB
    got = preflight_section(COMPOSE, settings, target)["gpu"]["total_bytes"]
    assert got == (total or configured)


def test_the_plugin_records_the_nvml_preflight_and_what_ran(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A gpu session with a fake backend: record.json as the plugin writes it."""
    from harness.report import browser
    from harness.stack import factory
    from harness.telemetry import nvml

    spec = load_stack(COMPOSE)
    stack = running_stack(spec, tmp_path)
    backend = SimpleNamespace(up=lambda: stack, down=lambda: None, stack=stack)

    def no_screenshot(*a: Any) -> Any:
        raise HarnessError("no browser here")

    reports = tmp_path / "reports"
    monkeypatch.setenv("HARNESS_REPORTS_DIR", str(reports))
    monkeypatch.setattr(nvml, "total_memory_or_none", lambda index=0: 80 * GIB)
    monkeypatch.setattr(factory, "make_backend", lambda *a, **kw: backend)
    monkeypatch.setattr(
        stack_facts, "engine_version", lambda url, **kw: {"version": "0.33.0", "error": None}
    )
    monkeypatch.setattr(browser, "screenshot", no_screenshot)
    pytester.makepyfile(test_x="def test_x(stack):\n    pass\n")
    result = pytester.runpytest_inprocess(
        "--harness-target", "gpu", "--harness-compose", str(COMPOSE), "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=1)
    [path] = reports.glob("runs/*-gpu/record.json")
    doc = load_record(path)
    assert doc["preflight"]["gpu"]["total_bytes"] == 80 * GIB
    assert doc["stack"]["versions"]["vllm-primary"] == {"version": "0.33.0", "error": None}
    assert doc["stack"]["image_ids"]["vllm-router"] == ROUTER_ID
    assert "Ran: `vllm-router` vLLM 0.33.0" in (path.parent / "report.md").read_text()


# -- the ai-router image: built on every gpu run, once, before production stops -------------------


class FakeImages:
    def __init__(self, present: tuple[str, ...]) -> None:
        self.present, self.built, self.got = present, [], []  # type: ignore[var-annotated]

    def get(self, image: str) -> Any:
        self.got.append(image)
        if image not in self.present:
            raise docker_errors.ImageNotFound(image)
        return SimpleNamespace(id="sha256:old")

    def build(self, path: str, tag: str, rm: bool = True) -> tuple[Any, list[Any]]:
        self.built.append((path, tag))
        return SimpleNamespace(id="sha256:" + "e5" * 32), []


def prepared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str
) -> tuple[containers.ContainersBackend, list[ContainerPlan], FakeImages, list[str]]:
    spec = load_stack(COMPOSE)
    said: list[str] = []
    backend = containers.ContainersBackend(spec, tmp_path, target=target, progress=said.append)
    images = FakeImages(present=("ai-router:local", PINNED))  # the tag exists, stale or not
    backend._client = SimpleNamespace(images=images)
    monkeypatch.setattr(containers, "running_production", lambda *a, **kw: [])
    monkeypatch.setattr(containers.ContainersBackend, "_check_prefetched", lambda self: None)
    plans = gpu_plans(spec, "r1", "k", environ={}, env_files_required=False)
    backend._prepare_gpu(plans)
    return backend, plans, images, said


def test_the_gpu_run_builds_the_router_image_although_its_tag_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, plans, images, said = prepared(tmp_path, monkeypatch, "gpu")
    context = str((COMPOSE.parent / "ai-router").resolve())
    # fake-xai runs the same image: one build for both.
    assert images.built == [(context, "ai-router:local")]
    assert f"built ai-router:local: sha256:{'e5' * 32}" in said
    for plan in plans:
        backend._ensure_image(plan)
    assert "ai-router:local" not in images.got and images.built == [(context, "ai-router:local")]


def test_the_emulated_gpu_keeps_building_only_a_missing_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, plans, images, _ = prepared(tmp_path, monkeypatch, "twin-docker")
    assert images.built == []
    router = next(p for p in plans if p.service == "ai-router")
    backend._ensure_image(router)
    assert images.built == [] and images.got == ["ai-router:local"]


# -- the GPU probe: the compose file's vLLM image, with its device request -----------------------


def test_the_gpu_target_probes_the_compose_vllm_image_with_its_device_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[dict[str, Any]] = []

    def capability(**kw: Any) -> str:
        asked.append(kw)
        return "stop here"

    monkeypatch.setattr(containers_factory, "container_capability", capability)
    with pytest.raises(CapabilityError, match="stop here"):
        containers_factory.make_containers_backend(
            "gpu", COMPOSE, Settings(path=None, environ={}), tmp_path
        )
    [kw] = asked
    assert kw["gpu"] is True and kw["image"] == PINNED
    assert [(d.driver, d.count, d.capabilities) for d in kw["devices"]] == [("nvidia", 1, ("gpu",))]


class ProbeClient:
    """Holds only an older vllm/vllm-openai tag; records any container created."""

    def __init__(self, present: tuple[str, ...]) -> None:
        self.created: list[tuple[str, dict[str, Any]]] = []
        self.images = SimpleNamespace(get=self._get, list=lambda name=None: [])
        self.containers = SimpleNamespace(create=self._create)
        self.present = present

    def _get(self, image: str) -> Any:
        if image not in self.present:
            raise docker_errors.ImageNotFound(image)
        return SimpleNamespace(tags=[image])

    def _create(self, image: str, **kw: Any) -> Any:
        self.created.append((image, kw))
        out = [b"GPU 0: NVIDIA H100 (UUID: GPU-1)\n"]
        return SimpleNamespace(
            start=lambda: None,
            logs=lambda stream, follow: iter(out),
            wait=lambda timeout=None: {"StatusCode": 0},
            remove=lambda force=False: None,
        )


def test_the_probe_uses_exactly_the_pinned_image_or_says_make_prefetch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from harness.stack.containers import client as client_module

    older = ProbeClient(present=("vllm/vllm-openai:latest",))
    monkeypatch.setattr(client_module, "docker_client", lambda timeout_s=60: older)
    why = container_capability(gpu=True, image=PINNED)
    assert why is not None and PINNED in why and "make prefetch" in why
    assert older.created == []


def test_the_probe_asks_docker_for_the_compose_device_request() -> None:
    devices = load_stack(COMPOSE).primary.devices
    client = ProbeClient(present=(PINNED,))
    assert gpu_probe(client, PINNED, devices) is None
    [(image, kw)] = client.created
    assert image == PINNED
    assert kw["device_requests"] == [
        DeviceRequest(driver="nvidia", count=1, capabilities=[["gpu"]])
    ]


# -- the device request as compose declares it ---------------------------------------------------


def test_the_shipped_compose_reserves_one_gpu_per_engine_and_the_plans_ask_for_one() -> None:
    spec = load_stack(COMPOSE)
    for plan in gpu_plans(spec, "r1", "k", environ={}, env_files_required=False):
        requests = docker_kwargs(plan).get("device_requests")
        if plan.role in ("classifier", "primary"):
            assert requests == [DeviceRequest(driver="nvidia", count=1, capabilities=[["gpu"]])]
            assert "--gpus 1" in plan.render()
        else:
            assert requests is None


def compose_with(devices: Any) -> StackSpec:
    text = json.dumps({
        "services": {
            "vllm-primary": {
                "image": PINNED,
                "command": ["m"],
                "deploy": {"resources": {"reservations": {"devices": devices}}},
            }
        }
    })  # fmt: skip
    return parse_stack(text, Path("compose.yml"))


@pytest.mark.parametrize(("device", "count", "ids", "gpus"), [
    ({"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}, -1, [], "all"),
    ({"capabilities": ["gpu"]}, -1, [], "all"),
    ({"count": 2, "capabilities": ["gpu"]}, 2, [], "2"),
    ({"device_ids": ["0", "3"], "capabilities": ["gpu", "utility"]}, 0, ["0", "3"], "device=0,3"),
])  # fmt: skip
def test_count_all_and_device_ids_are_read_as_compose_reads_them(
    device: dict[str, Any], count: int, ids: list[str], gpus: str
) -> None:
    svc = compose_with([device]).services["vllm-primary"]
    assert svc.gpu
    [request] = docker_kwargs(
        ContainerPlan("s", "primary", "n", PINNED, (), gpu=True, devices=svc.devices)
    )["device_requests"]
    assert request["Count"] == count and request["DeviceIDs"] == ids
    assert request["Capabilities"] == [list(device["capabilities"])]
    assert svc.devices[0].docker_gpus() == gpus


@pytest.mark.parametrize(("devices", "needle"), [
    ([{"count": 1, "device_ids": ["0"], "capabilities": ["gpu"]}], "exclude each other"),
    ([{"count": 0, "capabilities": ["gpu"]}], "positive number or `all`"),
    ([{"count": "some", "capabilities": ["gpu"]}], "positive number or `all`"),
    ([{"capabilities": "gpu"}], "are lists"),
    (["gpu"], "must be a mapping"),
    ({"driver": "nvidia"}, "must be a list"),
])  # fmt: skip
def test_a_device_reservation_compose_would_refuse_names_the_entry(
    devices: Any, needle: str
) -> None:
    with pytest.raises(SpecError, match=needle) as err:
        compose_with(devices)
    assert "deploy.resources.reservations.devices" in str(err.value)
