"""One plan builder: the gpu target's plans, and the emulated GPU made from them by named
substitutions only. No Docker needed."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from harness.compose import load_stack
from harness.config import Settings
from harness.stack.containers.backend import ContainersBackend
from harness.stack.containers.emulate import Emulation, emulate
from harness.stack.containers.ingress import with_ingress
from harness.stack.containers.plan import ContainerPlan, gpu_plans, port_bindings
from harness.telemetry.recorded_card import recorded_card
from harness.twin.engines import CPU_BLOCK_SIZE, TwinModelDirs
from harness.twin.substitutions import CATALOGUE, Substitution, describe, summary
from harness.vram.check import run_check

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "infra" / "docker-compose.yml"
RUN = "em1d"
OWNER_XAI_KEY = "xai-owner-real-key-9c1e"
EMULATED = ["vllm-router", "vllm-primary", "fake-xai", "ai-router"]


def tiny_model(path: Path) -> Path:
    path.mkdir(parents=True)
    config = {
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "hidden_size": 128,
        "head_dim": 64,
        "vocab_size": 1024,
        "torch_dtype": "float32",
    }
    (path / "config.json").write_text(json.dumps(config))
    return path


@pytest.fixture
def owner_compose(tmp_path: Path) -> Path:
    """The real compose file beside an owner's `.secrets` holding a real-looking xAI key."""
    infra = tmp_path / "infra"
    infra.mkdir()
    shutil.copy(COMPOSE, infra / "docker-compose.yml")
    (infra / ".secrets").write_text(f"XAI_API_KEY={OWNER_XAI_KEY}\nROUTER_API_KEYS=owner\n")
    return infra / "docker-compose.yml"


def flag(command: tuple[str, ...], name: str) -> str:
    return command[command.index(name) + 1]


def backend(tmp_path: Path, compose: Path = COMPOSE, **kv: int) -> ContainersBackend:
    result = run_check(compose, Settings(path=None, environ={}))
    models = TwinModelDirs(tiny_model(tmp_path / "m" / "c"), tiny_model(tmp_path / "m" / "p"))
    emu = Emulation(
        result.plan, models, kv_overrides=kv, router_env={"ROUTER_CLASSIFIER_TIMEOUT_S": "120"}
    )
    return ContainersBackend(
        spec=result.spec,
        run_dir=tmp_path / "run",
        target="twin-docker",
        emulation=emu,
        vram_plan=result.plan,
        run_id=RUN,
    )


def test_every_plan_publishes_its_health_port_on_loopback(owner_compose: Path) -> None:
    spec = load_stack(owner_compose)
    for include_edge in (False, True):
        for plan in gpu_plans(spec, RUN, "k", include_edge=include_edge, environ={}):
            if plan.health_port is None:
                continue
            bindings = port_bindings(plan)
            assert f"{plan.health_port}/tcp" in bindings, f"{plan.service} is unreachable"
            assert bindings[f"{plan.health_port}/tcp"] == ("127.0.0.1", None)
    # The ai-router sits behind traefik in production: it has no compose `ports:` at all.
    assert spec.services["ai-router"].ports == ()


def test_the_router_talks_to_the_fake_xai_unless_real_xai_is_asked_for(
    owner_compose: Path,
) -> None:
    spec = load_stack(owner_compose)
    by = {p.service: p for p in gpu_plans(spec, RUN, "hk", environ={})}
    router, fake = by["ai-router"], by["fake-xai"]
    assert list(by).index("fake-xai") == list(by).index("ai-router") - 1
    assert router.environment["XAI_BASE_URL"] == "http://fake-xai:8000/v1"
    assert router.environment["XAI_API_KEY"] != OWNER_XAI_KEY
    assert OWNER_XAI_KEY not in json.dumps(dict(router.environment))
    assert fake.image == router.image and fake.build_context == router.build_context
    assert fake.health_port == 8000 and "harness.fakes.xai" in fake.command
    real = {p.service: p for p in gpu_plans(spec, RUN, "hk", environ={}, real_xai=True)}
    assert "fake-xai" not in real
    assert real["ai-router"].environment["XAI_BASE_URL"] == "https://api.x.ai/v1"
    assert real["ai-router"].environment["XAI_API_KEY"] == OWNER_XAI_KEY


def test_the_emulated_gpu_is_the_gpu_plans_with_named_substitutions(tmp_path: Path) -> None:
    be = backend(tmp_path)
    # The gpu target's plans where it starts its own edge (traefik, cloudflared): the emulated
    # GPU starts traefik and names the tunnel as not started.
    edge = gpu_plans(be.spec, RUN, "hk", include_edge=True, env_files_required=False)
    gpu = {p.service: p for p in with_ingress(be.spec, edge, RUN, be.run_dir)[0]}
    emulated = {p.service: p for p in be.plans("hk")}
    assert list(emulated) == [*EMULATED, "traefik"]
    assert list(gpu) == [*EMULATED, "traefik", "cloudflared"]
    for name, plan in emulated.items():
        real = gpu[name]
        # What is not a substitution is the gpu plan's own.
        for attr in ("name", "ports", "health_port", "health_path", "aliases", "labels"):
            assert getattr(plan, attr) == getattr(real, attr), (name, attr)
        assert plan.image == "ai-router-harness-base:bookworm" and not plan.gpu
        assert all(m in plan.mounts for m in real.mounts)
    names = {s.name for s in be.substitutions}
    assert {"image", "model", "gpu-device", "gpu-flags", "kv-dtype", "kv-capacity"} <= names
    assert {"nvml", "env-files", "classifier-timeout", "ingress-binary", "tunnel"} <= names
    assert names <= set(CATALOGUE)
    lines = describe(be.substitutions)
    assert lines[0].startswith("substitution image: vllm-router: vllm/vllm-openai:v0.33.0 -> ")
    assert any(line.startswith("substitution gpu-device: vllm-primary") for line in lines)
    notes = ["containers: run id r, ryuk off", *lines]
    assert summary(notes) == f"{len(lines)} named substitutions, see the report"
    assert summary(notes[:2], where="notes.txt") == "1 named substitution, see notes.txt"
    assert summary(notes[:1]) is None


def test_the_engine_command_is_the_compose_command_token_for_token_but_the_named_flags(
    tmp_path: Path,
) -> None:
    be = backend(tmp_path)
    real = {p.service: p for p in gpu_plans(be.spec, RUN, "hk", env_files_required=False)}
    emulated = {p.service: p for p in be.plans("hk")}
    for name in ("vllm-router", "vllm-primary"):
        got, want = emulated[name].command, real[name].command
        expected = [got[0]]
        rest = list(want[1:])
        while rest:
            tok = rest.pop(0)
            if tok == "--gpu-memory-utilization":
                rest.pop(0)
                continue
            expected.append("auto" if tok == "fp8" else tok)
        # compile, dtype: the twin engines run uncompiled and in float32.
        expected += ["--optimization-level", "0", "--dtype", "float32"]
        blocks = flag(got, "--num-gpu-blocks-override")
        expected += ["--num-gpu-blocks-override", blocks, "--block-size", str(CPU_BLOCK_SIZE)]
        assert list(got) == expected
        assert want[0].startswith("Qwen/") and not got[0].startswith("Qwen/")
        assert flag(got, "--port") == "8000"
        entrypoint = emulated[name].entrypoint
        assert entrypoint is not None
        assert entrypoint[-2:] == ("vllm.entrypoints.openai.api_server", "--model")
        assert emulated[name].environment["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"  # executor
    primary = emulated["vllm-primary"].command
    predicted = be.vram_plan.engine("vllm-primary").kv_capacity_tokens  # type: ignore[union-attr]
    blocks = int(flag(primary, "--num-gpu-blocks-override"))
    assert 0 <= blocks * CPU_BLOCK_SIZE - predicted < CPU_BLOCK_SIZE
    assert flag(primary, "--reasoning-parser") == "qwen3"


def test_a_kv_override_is_a_kv_capacity_substitution(tmp_path: Path) -> None:
    be = backend(tmp_path, primary=49152)
    plans = {p.service: p for p in be.plans("hk")}
    assert flag(plans["vllm-primary"].command, "--num-gpu-blocks-override") == "384"
    (kv,) = [s for s in be.substitutions if s.name == "kv-capacity" and s.service == "vllm-primary"]
    assert kv.before == "49,152 tokens" and "384 blocks" in kv.after


def test_the_router_and_fake_run_the_same_programs_from_the_virtualenv(tmp_path: Path) -> None:
    be = backend(tmp_path)
    plans = {p.service: p for p in be.plans("hk")}
    router = plans["ai-router"]
    assert router.command[:3] == (sys.executable, "-m", "gunicorn")
    assert router.environment["ROUTER_CLASSIFIER_URL"] == "http://vllm-router:8000"
    assert router.environment["ROUTER_API_KEYS"] == "hk"
    assert "hk" not in router.render().split("ROUTER_API_KEYS=")[1].split()[0]
    assert plans["fake-xai"].entrypoint == (sys.executable,)


def test_unknown_substitutions_cannot_be_made() -> None:
    with pytest.raises(ValueError, match="unknown substitution 'ports'"):
        Substitution("ports", "ai-router", "a", "b")


def test_the_recorded_card_has_the_configured_size_and_passes_the_preflight(
    tmp_path: Path,
) -> None:
    from harness.vram.free import free_memory_finding

    be = backend(tmp_path)
    assert be.vram_plan is not None
    card = recorded_card(be.vram_plan.assumptions.total_bytes)
    assert card.total_bytes == 96 * 2**30 and card.processes == ()
    assert free_memory_finding(be.vram_plan, card) is None
    busy = recorded_card(20 * 2**30)
    assert free_memory_finding(be.vram_plan, busy) is not None


def test_emulate_applies_to_any_gpu_plan_list(tmp_path: Path) -> None:
    be = backend(tmp_path)
    assert be.emulation is not None
    plans: list[ContainerPlan] = gpu_plans(be.spec, RUN, "hk", env_files_required=False)
    out, subs = emulate(be.spec, plans[:1], be.emulation, tmp_path / "run")
    assert [p.service for p in out] == ["vllm-router"]
    # Per service, plus the one bring-up step the emulation changes (the prefetch check).
    assert {s.service for s in subs} == {"vllm-router", "bring-up"}


def test_a_secret_in_the_harness_environment_never_shows_in_an_emulated_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    planted = "hf_PLANTED_emulated_secret_77"
    monkeypatch.setenv("HF_TOKEN", planted)
    be = backend(tmp_path)
    for plan in be.plans("hk"):
        assert planted not in plan.render(), plan.service
        if plan.role not in ("classifier", "primary"):  # compose gives HF_TOKEN to engines only
            assert plan.environment.get("HF_TOKEN") != planted, plan.service


def test_from_a_gpu_box_install_the_containers_run_the_named_runtime_and_volume_models(
    tmp_path: Path,
) -> None:
    """HARNESS_TWIN_RUNTIME's interpreter runs every container, and the engines serve the twin
    models from the HF cache volume: no host model folder is mounted, and the prefetch check
    and the capped health budgets are printed as substitutions."""
    from harness.stack.containers.emulate import Runtime
    from harness.stack.containers.twin_weights import SNAPSHOT, volume_models
    from harness.vram.arch import resolve_arch

    result = run_check(COMPOSE, Settings(path=None, environ={}))
    runtime = Runtime("/opt/twin/bin/python", "/opt/twin", "/usr/local")
    models = volume_models(result.spec)
    arch = resolve_arch(str(tiny_model(tmp_path / "m")))
    emu = Emulation(
        result.plan, models, runtime=runtime, weights_in_volume=True,
        archs={"classifier": arch, "primary": arch},
    )  # fmt: skip
    be = ContainersBackend(
        spec=result.spec, run_dir=tmp_path / "run", target="twin-docker", emulation=emu,
        vram_plan=result.plan, run_id=RUN,
    )  # fmt: skip
    plans = {p.service: p for p in be.plans("hk")}
    engine = plans["vllm-router"]
    assert engine.entrypoint is not None and engine.entrypoint[0] == "/opt/twin/bin/python"
    want = "/root/.cache/huggingface/hub/models--Qwen--Qwen2.5-3B-Instruct/snapshots/" + SNAPSHOT
    assert engine.command[0] == want
    assert ("/root/.cache/huggingface" in {m.target for m in engine.mounts}) and not any(
        m.source.startswith(str(tmp_path / "m")) for m in engine.mounts
    )
    assert {"/opt/twin", "/usr/local"} <= {m.source for m in engine.mounts}
    assert plans["ai-router"].command[0] == "/opt/twin/bin/python"
    assert plans["fake-xai"].entrypoint == ("/opt/twin/bin/python",)
    assert engine.environment["PATH"].startswith("/opt/twin/bin:")
    made = {(s.name, s.service): s for s in be.substitutions}
    assert "weights checked in the compose volume" in made[("prefetch", "bring-up")].after
    probe = made[("gpu-probe", "bring-up")]
    assert probe.before == "nvidia-smi -L in vllm/vllm-openai:v0.33.0 (--gpus 1)"
    assert made[("gpu-device", "vllm-router")].before == "--gpus 1"
    budget = made[("health-budget", "vllm-primary")]
    assert budget.before == "1245 s" and budget.after == "300 s"
