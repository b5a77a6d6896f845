"""`harness doctor`: each check's OK and FAIL (or SKIP) answers against a fake NVML and a fake
docker client, the exit code, and that no secret value is ever printed. No GPU, no Docker."""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import docker.errors
import pytest

from harness.cli import main
from harness.compose import StackSpec, load_stack
from harness.errors import CapabilityError
from harness.stack import doctor_checks as dc
from harness.stack.containers import prod_marker
from harness.units import GIB

VLLM = "vllm/vllm-openai:v0.33.0"
MODELS = ("Qwen/Qwen2.5-3B-Instruct", "Qwen/Qwen3-32B-FP8")
NAMES = ("CF_TUNNEL_TOKEN", "XAI_API_KEY", "ROUTER_API_KEYS")
PLANTED = {name: f"planted-{name.lower()}-9f3e1c77" for name in NAMES}
# A tunnel token is base64 of {"a": account, "t": tunnel id, "s": secret}: the tunnel check
# reads its shape.
PLANTED["CF_TUNNEL_TOKEN"] = base64.b64encode(
    json.dumps({"a": "acct", "t": "tunnel", "s": PLANTED["CF_TUNNEL_TOKEN"]}).encode()
).decode()


class FakeNvml:
    def __init__(self, cards: int = 1, fail: bool = False) -> None:
        self.cards, self.fail, self.shut = cards, fail, False

    def nvmlSystemGetDriverVersion(self) -> bytes:
        return b"570.86.15"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        if self.fail:
            import pynvml

            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNKNOWN)
        return 12080

    def nvmlDeviceGetCount(self) -> int:
        return self.cards

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, h: int) -> str:
        return "NVIDIA RTX PRO 6000 Blackwell"

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        return SimpleNamespace(total=96 * GIB)

    def nvmlShutdown(self) -> None:
        self.shut = True


class FakeContainer:
    def __init__(self, name: str, service: str) -> None:
        self.id, self.name = f"{name}-id", name
        self.labels = {"com.docker.compose.project": "ai-stack",
                       "com.docker.compose.service": service}  # fmt: skip


class FakeClient:
    """What the checks ask Docker: `info`, images, a volume's mountpoint, containers."""

    def __init__(self, root: Path, images: tuple[str, ...] = (), running: tuple[str, ...] = (),
                 runtimes: tuple[str, ...] = ("runc",)) -> None:  # fmt: skip
        self.root, self.present, self.running = root, set(images), running
        self.runtimes = runtimes
        self.images = SimpleNamespace(get=self._image)
        self.api = SimpleNamespace(inspect_volume=self._volume)
        self.containers = SimpleNamespace(list=self._containers)

    def info(self) -> dict[str, Any]:
        runtimes = {r: {"path": r} for r in self.runtimes}
        return {"ServerVersion": "27.3.1", "DockerRootDir": str(self.root), "Runtimes": runtimes,
                "CDISpecDirs": [str(self.root / "cdi")]}  # fmt: skip

    def _image(self, name: str) -> Any:
        if name not in self.present:
            raise docker.errors.ImageNotFound(f"No such image: {name}")
        return SimpleNamespace(tags=[name])

    def _volume(self, name: str) -> dict[str, str]:
        return {"Mountpoint": str(self.root / "volumes" / name)}

    def _containers(self, all: bool = False, filters: Any = None) -> list[FakeContainer]:
        return [FakeContainer(f"prod-{s}", s) for s in self.running]


def add_weights(root: Path, volume: str = "ai-stack_hf-cache") -> None:
    for repo in MODELS:
        snap = root / "volumes" / volume / "hub" / f"models--{repo.replace('/', '--')}"
        (snap / "snapshots" / "abc").mkdir(parents=True)
        (snap / "snapshots" / "abc" / "config.json").write_text("{}")


@pytest.fixture
def compose(compose_variant: Callable[[Callable[[dict[str, Any]], None]], Path]) -> Path:
    """A copy of the real compose file, with the .secrets.example beside it."""
    path = compose_variant(lambda doc: None)
    example = Path(__file__).resolve().parents[2] / "infra" / ".secrets.example"
    shutil.copy(example, path.parent / ".secrets.example")
    return path


@pytest.fixture
def spec(compose: Path) -> StackSpec:
    return load_stack(compose)


def write_secrets(compose: Path, values: dict[str, str]) -> None:
    (compose.parent / ".secrets").write_text("".join(f"{k}={v}\n" for k, v in values.items()))


def test_a_check_is_one_line() -> None:
    assert dc.passed("docker", "engine 27").line() == "OK   docker: engine 27"
    assert dc.failed("disk", "full").line() == "FAIL disk: full"
    assert dc.skipped("prefetch").line() == "SKIP prefetch: needs Docker (see docker)"


# -- NVML -------------------------------------------------------------------------------------


def test_nvml_ok_names_the_driver_its_cuda_and_the_card() -> None:
    nv = FakeNvml()
    check = dc.check_nvml([VLLM], lambda: nv)
    assert check.ok and nv.shut
    assert "driver 570.86.15, CUDA 12.8 at most, 1 GPU(s): NVIDIA RTX PRO 6000" in check.detail
    assert f"the CUDA {VLLM} needs is not known here: gpu-probe tests it" in check.detail


def test_nvml_fails_without_a_driver_without_a_card_and_on_an_error() -> None:
    def no_driver() -> Any:
        raise CapabilityError("NVML is not usable here: NVML Shared Library Not Found")

    check = dc.check_nvml([VLLM], no_driver)
    assert check.status == "FAIL" and "no NVIDIA GPU is usable" in check.detail
    assert "install the NVIDIA driver" in check.detail
    assert dc.check_nvml([VLLM], lambda: FakeNvml(cards=0)).status == "FAIL"
    nv = FakeNvml(fail=True)
    assert dc.check_nvml([VLLM], lambda: nv).status == "FAIL" and nv.shut


# -- Docker and the toolkit -------------------------------------------------------------------


def test_docker_ok_and_fail(tmp_path: Path) -> None:
    check, client, info = dc.check_docker(lambda timeout_s: FakeClient(tmp_path))
    assert check.ok and client is not None and info["DockerRootDir"] == str(tmp_path)

    def no_engine(timeout_s: int) -> Any:
        raise CapabilityError("no Docker engine answers (ConnectionError)")

    check, client, info = dc.check_docker(no_engine)
    assert check.status == "FAIL" and "no Docker engine answers" in check.detail
    assert client is None and info == {}


def test_toolkit_found_by_runtime_cdi_or_hook_else_fail(tmp_path: Path) -> None:
    bare = FakeClient(tmp_path).info()
    assert dc.check_toolkit(None).status == "SKIP"
    assert dc.check_toolkit(FakeClient(tmp_path, runtimes=("runc", "nvidia")).info()).ok
    hook = "/usr/bin/nvidia-container-runtime-hook"
    assert dc.check_toolkit(bare, which=lambda n: hook).detail.startswith(hook)
    missing = dc.check_toolkit(bare, which=lambda n: None)
    assert missing.status == "FAIL" and "install nvidia-container-toolkit" in missing.detail
    (tmp_path / "cdi").mkdir()
    (tmp_path / "cdi" / "nvidia.yaml").write_text("cdiVersion: 0.5.0\n")
    assert dc.check_toolkit(bare, which=lambda n: None).ok


def test_gpu_probe_runs_the_compose_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str | None, tuple[Any, ...]]] = []

    def capability(gpu: bool, image: str | None = None, devices: tuple[Any, ...] = ()) -> None:
        asked.append((image, devices))

    monkeypatch.setattr(dc, "container_capability", capability)
    client = FakeClient(tmp_path, images=(VLLM,))
    one = ("one gpu",)  # the compose file's reservation, passed through as the run passes it
    assert dc.check_gpu_probe(client, [VLLM], driver_ok=True, devices=one).ok
    assert asked == [(VLLM, one)]
    too_old = "the NVIDIA driver is too old for the CUDA version of the vLLM image"
    monkeypatch.setattr(dc, "container_capability", lambda gpu, image=None, devices=(): too_old)
    assert dc.check_gpu_probe(client, [VLLM], driver_ok=True) == dc.failed("gpu-probe", too_old)


def test_gpu_probe_skips_without_docker_driver_or_image(tmp_path: Path) -> None:
    assert dc.check_gpu_probe(None, [VLLM], driver_ok=True).status == "SKIP"
    assert dc.check_gpu_probe(FakeClient(tmp_path), [VLLM], driver_ok=False).status == "SKIP"
    absent = dc.check_gpu_probe(FakeClient(tmp_path), [VLLM], driver_ok=True)
    assert absent.status == "SKIP" and "make prefetch" in absent.detail


# -- images, weights, disk --------------------------------------------------------------------


def test_prefetch_fails_naming_what_is_missing_then_passes(tmp_path: Path, spec: StackSpec) -> None:
    check = dc.check_prefetch(FakeClient(tmp_path), spec)
    assert check.status == "FAIL" and check.detail.endswith("run `make prefetch`")
    assert VLLM in check.detail and all(m in check.detail for m in MODELS)
    add_weights(tmp_path)
    assert dc.check_prefetch(FakeClient(tmp_path, images=(VLLM,)), spec).ok
    assert dc.check_prefetch(None, spec).status == "SKIP"


def _free(n_bytes: int) -> Callable[[str], Any]:
    return lambda path: SimpleNamespace(free=n_bytes)


def test_disk_needs_the_weights_and_image_until_prefetched(tmp_path: Path, spec: StackSpec) -> None:
    info = FakeClient(tmp_path).info()
    weights, unknown = dc.weights_bytes(spec)
    assert weights > 30 * GIB and unknown == []  # both models are in the VRAM catalog
    short = dc.check_disk(info, spec, prefetched=False, usage=_free(30 * GIB))
    assert short.status == "FAIL" and "move Docker's data-root" in short.detail
    assert "vLLM image about 10.00 GiB" in short.detail
    assert dc.check_disk(info, spec, prefetched=True, usage=_free(30 * GIB)).ok
    assert dc.check_disk(info, spec, prefetched=True, usage=_free(5 * GIB)).status == "FAIL"
    assert dc.check_disk(info, spec, prefetched=False, usage=_free(500 * GIB)).ok


def test_disk_skips_without_docker_or_a_local_data_root(tmp_path: Path, spec: StackSpec) -> None:
    assert dc.check_disk(None, spec, prefetched=None).status == "SKIP"
    remote = {"DockerRootDir": str(tmp_path / "elsewhere")}
    assert "not on this machine" in dc.check_disk(remote, spec, prefetched=True).detail


# -- secrets and production -------------------------------------------------------------------


def test_secrets_missing_file_unset_names_and_all_set(compose: Path, spec: StackSpec) -> None:
    check = dc.check_secrets(spec)
    assert check.status == "FAIL" and "does not exist" in check.detail and "cp " in check.detail
    write_secrets(compose, {**PLANTED, "XAI_API_KEY": ""})
    check = dc.check_secrets(spec)
    assert check.status == "FAIL" and "not set: XAI_API_KEY" in check.detail
    write_secrets(compose, PLANTED)
    check = dc.check_secrets(spec)
    assert check.ok and all(name in check.detail for name in NAMES)
    for value in PLANTED.values():
        assert value not in check.detail


def test_production_running_refuses_stopped_is_named(tmp_path: Path, spec: StackSpec) -> None:
    marker = tmp_path / "marker.json"
    running = FakeClient(tmp_path, running=("vllm-primary", "ai-router"))
    check = dc.check_production(running, spec, marker)
    assert check.status == "FAIL" and "--harness-replace-running" in check.detail
    assert "prod-vllm-primary" in check.detail
    assert dc.check_production(FakeClient(tmp_path), spec, marker).ok
    dead = prod_marker.ProdMarker("run-1", "", time.time(), ("vllm-primary",), 2**22 + 7)
    prod_marker.write(dead, marker)
    check = dc.check_production(FakeClient(tmp_path), spec, marker)
    assert check.ok and "make up" in check.detail
    prod_marker.write(prod_marker.ProdMarker("run-2", "", time.time(), (), os.getpid()), marker)
    assert dc.check_production(FakeClient(tmp_path), spec, marker).status == "FAIL"
    assert dc.check_production(None, spec, marker).status == "SKIP"


# -- bounds and the command -------------------------------------------------------------------


def test_a_check_that_hangs_is_a_fail_after_its_bound() -> None:
    def hang() -> str:
        time.sleep(3)
        return "done"

    start = time.monotonic()
    assert dc.within(0.2, hang, "late") == "late"
    assert time.monotonic() - start < 2

    def broken() -> str:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        dc.within(5, broken, "late")

    def unreadable() -> dc.Check:
        raise PermissionError(13, "Permission denied", "infra/.secrets")

    check = dc.bounded("secrets", unreadable)
    assert check.status == "FAIL" and "Permission denied" in check.detail


def _ready_box(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, compose: Path) -> None:
    """Everything `make gpu` needs, faked: driver, engine, toolkit, probe, prefetch, disk."""
    add_weights(tmp_path)
    write_secrets(compose, PLANTED)
    client = FakeClient(tmp_path, images=(VLLM,), runtimes=("runc", "nvidia"))
    monkeypatch.setattr(dc, "nvml_library", lambda: FakeNvml())
    monkeypatch.setattr(dc, "docker_client", lambda timeout_s: client)
    monkeypatch.setattr(dc, "container_capability", lambda gpu, image=None, devices=(): None)
    monkeypatch.setattr(shutil, "disk_usage", _free(500 * GIB))
    monkeypatch.setenv("HARNESS_STATE_DIR", str(tmp_path / "state"))


def test_doctor_exits_0_on_a_ready_box_and_never_prints_a_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, compose: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    _ready_box(monkeypatch, tmp_path, compose)
    assert main(["doctor", "--compose", str(compose)]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert [ln.split(":")[0] for ln in lines[:-1]] == [
        f"OK   {n}" for n in ("compose", "nvidia-driver", "docker", "container-toolkit",
                              "gpu-probe", "prefetch", "disk", "secrets", "production",
                              "tunnel-token")
    ] + ["WARN tunnel-origin"]  # fmt: skip
    # No cloudflared container here: its origin is not known, which does not stop `make gpu`.
    assert lines[-1].startswith("ready") and "1 WARN above" in lines[-1]
    assert main(["doctor", "--compose", str(compose), "--json"]) == 0
    json_out, json_err = capsys.readouterr()
    doc = json.loads(json_out)
    assert doc["ok"] is True and {c["status"] for c in doc["checks"]} == {"OK", "WARN"}
    secret = json.loads(base64.b64decode(PLANTED["CF_TUNNEL_TOKEN"]))["s"]
    for value in [*PLANTED.values(), secret]:
        assert value not in out + err + json_out + json_err


def test_doctor_exits_1_without_a_gpu_and_skips_what_needs_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, compose: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    _ready_box(monkeypatch, tmp_path, compose)

    def no_driver() -> Any:
        raise CapabilityError("NVML is not usable here: Driver Not Loaded")

    monkeypatch.setattr(dc, "nvml_library", no_driver)
    assert main(["doctor", "--compose", str(compose)]) == 1
    out = capsys.readouterr().out
    assert "FAIL nvidia-driver: no NVIDIA GPU is usable" in out
    assert "SKIP gpu-probe: needs a usable NVIDIA driver" in out
    assert out.splitlines()[-1].startswith("not ready")


def test_doctor_without_docker_skips_each_check_that_needs_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, compose: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    _ready_box(monkeypatch, tmp_path, compose)

    def no_engine(timeout_s: int) -> Any:
        raise CapabilityError("no Docker engine answers (ConnectionError)")

    monkeypatch.setattr(dc, "docker_client", no_engine)
    assert main(["doctor", "--compose", str(compose), "--json"]) == 1
    status = {c["name"]: c["status"] for c in json.loads(capsys.readouterr().out)["checks"]}
    assert status["docker"] == "FAIL" and status["secrets"] == "OK"
    assert {status[n] for n in ("container-toolkit", "gpu-probe", "prefetch", "disk",
                                "production")} == {"SKIP"}  # fmt: skip


def test_a_bad_compose_file_fails_its_line_and_skips_the_rest(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, compose: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    _ready_box(monkeypatch, tmp_path, compose)
    assert main(["doctor", "--compose", str(tmp_path / "absent.yml")]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAIL compose: ") and "SKIP production: needs the compose file" in out
