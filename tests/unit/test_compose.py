from __future__ import annotations

from pathlib import Path

import pytest

from harness.compose import load_stack
from harness.compose.services import MASK
from harness.errors import SpecError


def test_real_compose_parses_into_five_services_in_order(real_compose: Path) -> None:
    spec = load_stack(real_compose)
    assert set(spec.services) == {
        "traefik",
        "cloudflared",
        "ai-router",
        "vllm-router",
        "vllm-primary",
    }
    assert spec.start_order[:3] == ("vllm-router", "vllm-primary", "ai-router")
    assert [e.name for e in spec.engines] == ["vllm-router", "vllm-primary"]
    assert spec.networks == ("ai-network",)
    for svc in spec.services.values():
        assert svc.container_name == svc.name
        assert "ai-network" in svc.networks


def test_engines_carry_the_required_flags(real_compose: Path) -> None:
    spec = load_stack(real_compose)
    router, primary = spec.classifier.engine, spec.primary.engine
    assert router is not None and primary is not None
    assert (router.gpu_memory_utilization, primary.gpu_memory_utilization) == (0.14, 0.65)
    for e in (router, primary):
        assert e.max_model_len == 32768
        assert e.max_num_seqs == 3
        assert e.kv_cache_dtype == "fp8"
        assert e.served_model_name
    assert primary.reasoning_parser
    for svc in spec.engines:
        assert svc.gpu and svc.healthcheck is not None
        assert svc.healthcheck.url == "http://127.0.0.1:8000/health"
        assert svc.healthcheck.start_period_s >= 600
        assert all(p.loopback_only for p in svc.ports)
        assert any("huggingface" in v for v in svc.volumes)


def test_depends_on_encodes_router_then_primary_then_ai_router(real_compose: Path) -> None:
    spec = load_stack(real_compose)
    assert spec.services["vllm-primary"].depends_on == {"vllm-router": "service_healthy"}
    assert spec.services["ai-router"].depends_on == {"vllm-primary": "service_healthy"}


def test_secret_values_are_masked_and_never_inline(compose_variant, real_compose) -> None:
    def plant(doc):
        doc["services"]["cloudflared"]["environment"] = {"TUNNEL_TOKEN": "eyJhIjoiplanted"}

    spec = load_stack(compose_variant(plant))
    assert spec.services["cloudflared"].environment["TUNNEL_TOKEN"] == MASK
    assert ("cloudflared", "TUNNEL_TOKEN") in spec.inline_secrets
    assert "planted" not in repr(spec)
    assert load_stack(real_compose).inline_secrets == ()


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "docker-compose.yml"
    bad.write_text("services:\n  a:\n    image: x\n   broken: [\n")
    with pytest.raises(SpecError, match=r"docker-compose\.yml:4:\d+: YAML syntax error"):
        load_stack(bad)


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda d: d["services"]["ai-router"].update(depends_on=["nope"]), "depends on 'nope'"),
        (
            lambda d: d["services"]["vllm-router"].update(
                depends_on={"ai-router": {"condition": "service_healthy"}}
            ),
            "cycle: vllm-router -> ai-router -> vllm-primary -> vllm-router",
        ),
        (lambda d: d["services"]["vllm-router"].update(ports=["127.0.0.1:x:8000"]), "port mapping"),
        (lambda d: d["services"]["traefik"].pop("image"), "'traefik': `image:` is missing"),
        (lambda d: d["services"]["vllm-router"].pop("command"), "needs a `command:`"),
        (
            lambda d: d["services"]["vllm-router"]["healthcheck"].update(start_period="soon"),
            "healthcheck.start_period 'soon'",
        ),
        (lambda d: d.update(services=[]), "no `services:` mapping"),
    ],
)
def test_structural_errors_are_named(compose_variant, mutate, needle: str) -> None:
    with pytest.raises(SpecError) as exc:
        load_stack(compose_variant(mutate))
    assert needle in str(exc.value)
    assert "docker-compose.yml" in str(exc.value)


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read the compose file"):
        load_stack(tmp_path / "absent.yml")
