"""traefik for the process twin: the compose file's command and the ai-router's labels, turned
into the argv and file-provider routes that a process can run; each change named."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.compose import load_stack
from harness.errors import StackError
from harness.stack.base import ServiceHandle, Stack
from harness.stack.ingress import ingress, label_routes

UPSTREAMS = {"ai-router": "http://127.0.0.1:41234", "vllm-router": "http://127.0.0.1:41000"}


def build(path: Path) -> Any:
    spec = load_stack(path)
    return ingress(
        spec, spec.services["traefik"], UPSTREAMS, port=45678,
        dynamic_path=Path("/run/traefik-routes.yml"), access_log=Path("/run/access.jsonl"),
        version="3.7.15",
    )  # fmt: skip


def test_the_stock_compose_routes_its_rule_to_the_routers_port_here(real_compose: Path) -> None:
    ing = build(real_compose)
    assert ing.dynamic == {
        "http": {
            "routers": {
                "ai-router": {
                    "rule": "PathPrefix(`/v1`) || Path(`/health`)",
                    "entryPoints": ["web"],
                    "service": "ai-router",
                }
            },
            "services": {
                "ai-router": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:41234"}]}}
            },
        }
    }
    # The compose command, less its docker provider, with the entrypoint on loopback.
    assert "--entrypoints.web.address=127.0.0.1:45678" in ing.argv
    assert not [a for a in ing.argv if a.startswith("--providers.docker")]
    assert "--providers.file.filename=/run/traefik-routes.yml" in ing.argv
    assert ing.entrypoint == "web"
    names = [s.name for s in ing.substitutions]
    assert names == ["ingress-binary", "ingress-provider"]
    assert "traefik:v3.1" in ing.substitutions[0].before
    assert "--providers.docker=true" in ing.substitutions[1].before


def test_a_rule_changed_in_the_labels_is_the_rule_served(compose_variant: Callable) -> None:
    def mutate(doc: dict[str, Any]) -> None:
        doc["services"]["ai-router"]["labels"]["traefik.http.routers.ai-router.rule"] = (
            "PathPrefix(`/api`)"
        )

    ing = build(compose_variant(mutate))
    assert ing.dynamic["http"]["routers"]["ai-router"]["rule"] == "PathPrefix(`/api`)"


def test_a_service_not_enabled_is_not_routed(compose_variant: Callable) -> None:
    def mutate(doc: dict[str, Any]) -> None:
        doc["services"]["ai-router"]["labels"]["traefik.enable"] = "false"

    spec = load_stack(compose_variant(mutate))
    routes = label_routes(spec, spec.services["traefik"], UPSTREAMS)
    assert routes == {"http": {"routers": {}, "services": {}}}


def test_a_router_without_a_rule_is_named(compose_variant: Callable) -> None:
    def mutate(doc: dict[str, Any]) -> None:
        del doc["services"]["ai-router"]["labels"]["traefik.http.routers.ai-router.rule"]

    with pytest.raises(StackError, match="traefik router 'ai-router' has no rule label"):
        build(compose_variant(mutate))


def test_a_labelled_service_that_does_not_run_here_is_named(real_compose: Path) -> None:
    spec = load_stack(real_compose)
    with pytest.raises(StackError, match="service 'ai-router' carries traefik labels"):
        label_routes(spec, spec.services["traefik"], {"vllm-router": "http://127.0.0.1:1"})


def test_clients_enter_through_the_proxy_where_one_runs(real_compose: Path) -> None:
    stack = Stack("twin", load_stack(real_compose), Path("/run"))
    stack.services["ai-router"] = ServiceHandle("ai-router", "router", "http://127.0.0.1:1")
    assert stack.entry.url == "http://127.0.0.1:1"
    stack.services["traefik"] = ServiceHandle("traefik", "proxy", "http://127.0.0.1:2")
    assert stack.entry.url == "http://127.0.0.1:2"
    assert stack.router.url == "http://127.0.0.1:1"
