"""`harness prefetch` and the GPU probe, against fake docker clients; no Docker engine needed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import docker.errors
import pytest
from docker.types import DeviceRequest

from harness.cli import main
from harness.compose import load_stack
from harness.errors import StackError
from harness.stack.containers import client as client_module
from harness.stack.containers.client import container_capability, gpu_probe
from harness.stack.containers.prefetch import (
    ImageItem,
    WeightsItem,
    download_weights,
    missing_for_bringup,
    prefetch_items,
    pull_image,
    weights_present,
)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "infra" / "docker-compose.yml"
VLLM = "vllm/vllm-openai:v0.33.0"
MODELS = ("Qwen/Qwen2.5-3B-Instruct", "Qwen/Qwen3-32B-FP8")


def _no_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*a: Any, **kw: Any) -> Any:
        raise AssertionError("the dry run must not reach Docker")

    monkeypatch.setattr(client_module, "docker_client", refuse)
    monkeypatch.setattr(docker, "from_env", refuse)


# -- the plan ---------------------------------------------------------------------------------


def test_dry_run_on_the_default_compose_lists_images_build_models_and_volume(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _no_docker(monkeypatch)
    monkeypatch.chdir(ROOT)
    assert main(["prefetch", "--dry-run"]) == 0
    out = capsys.readouterr().out
    for image in (VLLM, "traefik:v3.1", "cloudflare/cloudflared:2024.12.2"):
        assert f"pull     {image} (" in out
    assert out.count(VLLM) == 1  # one pull for both engines
    build = next(line for line in out.splitlines() if "ai-router:local" in line)
    assert "build" in build and "infra/ai-router" in build and "pull " not in build
    for model in MODELS:
        line = next(ln for ln in out.splitlines() if model in ln)
        assert "weights" in line and "volume ai-stack_hf-cache" in line
    assert "nothing pulled or downloaded" in out


@pytest.mark.parametrize(("flag", "shown", "hidden"), [
    ("--images-only", "traefik:v3.1", "Qwen/Qwen3-32B-FP8"),
    ("--weights-only", "Qwen/Qwen3-32B-FP8", "traefik:v3.1"),
])  # fmt: skip
def test_dry_run_filters(
    flag: str,
    shown: str,
    hidden: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _no_docker(monkeypatch)
    assert main(["prefetch", "--dry-run", flag, "--compose", str(COMPOSE)]) == 0
    out = capsys.readouterr().out
    assert shown in out and hidden not in out


def test_only_flags_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["prefetch", "--images-only", "--weights-only"])
    assert exc.value.code == 2


def test_a_missing_compose_file_is_bad_input(tmp_path: Path) -> None:
    assert main(["prefetch", "--dry-run", "--compose", str(tmp_path / "none.yml")]) == 2


def test_items_put_the_weights_where_the_engines_mount_their_hf_home() -> None:
    items = prefetch_items(load_stack(COMPOSE))
    weights = [i for i in items if isinstance(i, WeightsItem)]
    assert [w.repo for w in weights] == list(MODELS)
    for w in weights:
        assert (w.volume, w.mount_target, w.subdir) == (
            "ai-stack_hf-cache",
            "/root/.cache/huggingface",
            "hub",
        )
        assert w.image == VLLM
    images = {i.image: i for i in items if isinstance(i, ImageItem)}
    assert images[VLLM].services == ("vllm-router", "vllm-primary")
    assert images["ai-router:local"].build_context is not None


def test_an_engine_without_a_cache_volume_is_listed_as_skipped(
    compose_variant: Callable[[Callable[[dict[str, Any]], None]], Path],
) -> None:
    def drop_volumes(doc: dict[str, Any]) -> None:
        doc["services"]["vllm-router"].pop("volumes", None)

    items = prefetch_items(load_stack(compose_variant(drop_volumes)))
    router = next(i for i in items if isinstance(i, WeightsItem) and i.repo == MODELS[0])
    assert router.volume is None and "skipped" in router.describe()


# -- image pull -------------------------------------------------------------------------------


def _pull_client(script: list[tuple[float, dict[str, Any]]], now: list[float]) -> Any:
    calls: list[tuple[Any, ...]] = []

    def pull(repo: str, tag: str, stream: bool, decode: bool) -> Iterator[dict[str, Any]]:
        calls.append((repo, tag, stream, decode))
        for t, event in script:
            now[0] = t
            yield event

    return SimpleNamespace(api=SimpleNamespace(pull=pull), calls=calls)


def test_pull_prints_each_layer_at_most_every_five_seconds_and_its_completion() -> None:
    mib = 1024 * 1024
    now = [0.0]

    def dl(layer: str, cur: int) -> dict[str, Any]:
        detail = {"current": cur * mib, "total": 100 * mib}
        return {"status": "Downloading", "id": layer, "progressDetail": detail}

    script: list[tuple[float, dict[str, Any]]] = [
        (0.0, {"status": "Pulling from vllm/vllm-openai", "id": "v0.33.0"}),
        (0.1, {"status": "Pulling fs layer", "id": "aaa", "progressDetail": {}}),
        (0.2, {"status": "Pulling fs layer", "id": "bbb", "progressDetail": {}}),
        (1.0, dl("aaa", 10)),
        (4.0, dl("aaa", 40)),
        (5.5, dl("aaa", 55)),
        (5.6, dl("bbb", 5)),
        (7.0, {"status": "Pull complete", "id": "aaa", "progressDetail": {}}),
        (7.1, {"status": "Digest: sha256:abc"}),
        (7.2, {"status": f"Status: Downloaded newer image for {VLLM}"}),
    ]
    client = _pull_client(script, now)
    lines: list[str] = []
    pull_image(client, VLLM, lines.append, clock=lambda: now[0])
    assert client.calls == [("vllm/vllm-openai", "v0.33.0", True, True)]
    aaa = [ln for ln in lines if "aaa" in ln]
    assert aaa == [
        "  aaa: Pulling fs layer",
        "  aaa: Downloading 55.0/100.0 MiB",
        "  aaa: Pull complete",
    ]
    assert "  bbb: Downloading 5.0/100.0 MiB" in lines
    assert "  Digest: sha256:abc" in lines
    assert lines[0] == f"pulling {VLLM}" and lines[-1].startswith(f"pulled {VLLM} in ")


def test_an_error_in_the_pull_stream_is_a_stack_error() -> None:
    now = [0.0]
    client = _pull_client([(0.0, {"error": "manifest unknown"})], now)
    with pytest.raises(StackError, match="manifest unknown"):
        pull_image(client, "traefik:v9", lambda s: None, clock=lambda: now[0])


@pytest.mark.parametrize(("exc", "words"), [
    (docker.errors.ImageNotFound("404", explanation="no such image"), "not in its registry"),
    (docker.errors.APIError("500", explanation="toomanyrequests"), "toomanyrequests"),
])  # fmt: skip
def test_docker_errors_during_a_pull_are_stack_errors(exc: Exception, words: str) -> None:
    def pull(*a: Any, **kw: Any) -> Any:
        raise exc

    client = SimpleNamespace(api=SimpleNamespace(pull=pull))
    with pytest.raises(StackError, match=words):
        pull_image(client, "traefik:v3.1", lambda s: None)


# -- throwaway containers ---------------------------------------------------------------------


class FakeContainer:
    def __init__(self, output: list[bytes], code: int, start_error: Exception | None) -> None:
        self.output, self.code, self.start_error = output, code, start_error
        self.removed = False

    def start(self) -> None:
        if self.start_error is not None:
            raise self.start_error

    def logs(self, stream: bool, follow: bool) -> Iterator[bytes]:
        yield from self.output

    def wait(self, timeout: float | None = None) -> dict[str, int]:
        return {"StatusCode": self.code}

    def remove(self, force: bool = False) -> None:
        self.removed = True


class FakeClient:
    """Runs each created container from `runs`, in order; knows the images in `images`."""

    def __init__(self, runs: list[FakeContainer], images: tuple[str, ...] = (VLLM,)) -> None:
        self.runs, self.images_here = list(runs), images
        self.created: list[tuple[str, dict[str, Any]]] = []
        self.containers = SimpleNamespace(create=self._create)
        self.images = SimpleNamespace(get=self._get, list=lambda name=None: [])
        self.api = SimpleNamespace(inspect_volume=self._inspect)
        self.mountpoints: dict[str, str] = {}

    def _create(self, image: str, **kw: Any) -> FakeContainer:
        self.created.append((image, kw))
        return self.runs.pop(0)

    def _get(self, image: str) -> Any:
        if image not in self.images_here:
            raise docker.errors.ImageNotFound(image)
        return SimpleNamespace(tags=[image])

    def _inspect(self, name: str) -> dict[str, str]:
        if name not in self.mountpoints:
            raise docker.errors.NotFound(name)
        return {"Mountpoint": self.mountpoints[name]}


NO_TOOLKIT = 'could not select device driver "" with capabilities: [[gpu]]'
OLD_DRIVER = (
    "failed to create task: nvidia-container-cli: requirement error: unsatisfied condition: "
    "cuda>=12.9, please update your driver to a newer version"
)


@pytest.mark.parametrize(("docker_text", "reason"), [
    (NO_TOOLKIT, "install nvidia-container-toolkit"),
    (OLD_DRIVER, "driver is too old"),
])  # fmt: skip
def test_the_gpu_probe_says_why_docker_refused(docker_text: str, reason: str) -> None:
    container = FakeContainer([], 0, docker.errors.APIError("500", explanation=docker_text))
    client = FakeClient([container])
    why = gpu_probe(client, VLLM)
    assert why is not None and reason in why and docker_text in why
    assert container.removed


def test_the_gpu_probe_runs_nvidia_smi_with_the_plans_device_request() -> None:
    container = FakeContainer([b"GPU 0: NVIDIA H200 (UUID: GPU-1234)\n"], 0, None)
    client = FakeClient([container])
    assert gpu_probe(client, VLLM) is None
    image, kw = client.created[0]
    assert image == VLLM and kw["entrypoint"] == "nvidia-smi" and kw["command"] == ["-L"]
    assert kw["device_requests"] == [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    assert container.removed


def test_the_gpu_probe_never_pulls_a_missing_image() -> None:
    client = FakeClient([], images=())
    why = gpu_probe(client, VLLM)
    assert why is not None and "not here" in why and "prefetch" in why
    assert client.created == []


def test_container_capability_returns_the_probe_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    container = FakeContainer([], 0, docker.errors.APIError("500", explanation=NO_TOOLKIT))
    monkeypatch.setattr(
        client_module, "docker_client", lambda timeout_s=60: FakeClient([container])
    )
    why = container_capability(gpu=True, image=VLLM)
    assert why is not None and "nvidia-container-toolkit" in why and NO_TOOLKIT in why


def test_download_falls_back_to_huggingface_cli_streams_progress_and_hides_the_token() -> None:
    token = "hf_secretsecret"
    missing_hf = docker.errors.APIError(
        "400", explanation='exec: "hf": executable file not found in $PATH: unknown'
    )
    bar = "model-00001.safetensors:  {}%|###| {}G/4G"
    output = [
        f"Fetching 12 files, token {token}\n".encode(),
        ("\r" + bar.format(10, 0.4)).encode(),
        ("\r" + bar.format(20, 0.8)).encode(),
        ("\r" + bar.format(100, 4.0) + "\n").encode(),
        b"/root/.cache/huggingface/hub/models--Qwen--Qwen3-32B-FP8/snapshots/abc",
    ]
    client = FakeClient([FakeContainer([], 0, missing_hf), FakeContainer(output, 0, None)])
    lines: list[str] = []
    env = {"HF_HOME": "/root/.cache/huggingface", "HF_TOKEN": token}
    download_weights(
        client, VLLM, "ai-stack_hf-cache", MODELS[1], "/root/.cache/huggingface", env,
        lines.append, cache_dir="/root/.cache/huggingface/hub", clock=lambda: 0.0,
    )  # fmt: skip
    assert [kw["entrypoint"] for _, kw in client.created] == ["hf", "huggingface-cli"]
    kw = client.created[1][1]
    assert kw["command"][:2] == ["download", MODELS[1]]
    assert kw["environment"]["HF_TOKEN"] == token
    assert kw["volumes"] == {
        "ai-stack_hf-cache": {"bind": "/root/.cache/huggingface", "mode": "rw"}
    }
    assert not any(token in ln for ln in lines)
    bars = [ln for ln in lines if "%|" in ln]
    assert len(bars) == 2 and "10%" in bars[0] and "100%" in bars[1]  # 20% fell in the 5 s
    assert lines[-1] == f"downloaded {MODELS[1]}"


def test_a_failed_download_is_a_stack_error_with_the_output_tail() -> None:
    client = FakeClient([FakeContainer([b"401 Client Error: Unauthorized\n"], 1, None)])
    with pytest.raises(StackError, match="HF_TOKEN") as exc:
        download_weights(client, VLLM, "v", "org/gated", "/hf", {}, lambda s: None)
    assert "401 Client Error" in str(exc.value)


# -- what a bring-up still needs --------------------------------------------------------------


def _snapshot(root: Path, repo: str, *, partial: bool = False) -> None:
    base = root / "hub" / f"models--{repo.replace('/', '--')}"
    (base / "snapshots" / "abc").mkdir(parents=True)
    (base / "snapshots" / "abc" / "config.json").write_text("{}")
    (base / "blobs").mkdir()
    if partial:
        (base / "blobs" / "123.incomplete").write_text("")


def test_weights_present_reads_the_volume_mountpoint(tmp_path: Path) -> None:
    client = FakeClient([])
    client.mountpoints["done"] = str(tmp_path / "done")
    client.mountpoints["partial"] = str(tmp_path / "partial")
    _snapshot(tmp_path / "done", MODELS[0])
    _snapshot(tmp_path / "partial", MODELS[0], partial=True)
    assert weights_present(client, "done", MODELS[0])
    assert not weights_present(client, "done", MODELS[1])
    assert not weights_present(client, "partial", MODELS[0])
    assert not weights_present(client, "absent", MODELS[0])
    assert client.created == []  # never a container where the Mountpoint answers


def test_missing_for_bringup_names_the_image_and_the_weights(tmp_path: Path) -> None:
    client = FakeClient([], images=())
    client.mountpoints["ai-stack_hf-cache"] = str(tmp_path)
    _snapshot(tmp_path, MODELS[0])
    missing = missing_for_bringup(client, load_stack(COMPOSE))
    assert len(missing) == 2, missing
    assert VLLM in missing[0] and "prefetch" in missing[0] and "health budget" in missing[0]
    assert MODELS[1] in missing[1] and "ai-stack_hf-cache" in missing[1]
    assert not any("traefik" in m or "ai-router" in m for m in missing)
