"""The ingress: clients reach the ai-router through the stack's traefik, which serves the
compose file's rule (`PathPrefix(/v1) || Path(/health)`) and nothing else.

Where the harness started no traefik (attach, where the configured URL is already the owner's
entry; the emulated GPU, which starts the engines and the ai-router only), this skips."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from harness.stack.ingress import label_routes

# traefik's own answer for a path no router matches.
TRAEFIK_404 = "404 page not found"


@pytest.fixture(scope="module")
def proxy(stack: Any) -> Any:
    if stack.entry is stack.router:
        pytest.skip(f"the {stack.target} stack the harness brought up runs no traefik")
    return stack.entry


def test_the_compose_rule_routes_to_the_ai_router(proxy: Any, stack: Any) -> None:
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    health = httpx.get(proxy.url + "/health", timeout=30)
    assert health.status_code == 200, health.text[:200]
    models = httpx.get(proxy.url + "/v1/models", headers=headers, timeout=30)
    assert models.status_code == 200, models.text[:200]
    # The ai-router's own answer, passed through: the same models as asked of it directly.
    direct = httpx.get(stack.router.url + "/v1/models", headers=headers, timeout=30)
    assert models.json()["data"] == direct.json()["data"]


@pytest.mark.parametrize("path", ["/metrics", "/", "/v2/models", "/healthz"])
def test_a_path_outside_the_rule_gets_traefiks_404(proxy: Any, stack: Any, path: str) -> None:
    r = httpx.get(proxy.url + path, timeout=30)
    assert r.status_code == 404, f"{path}: {r.status_code} {r.text[:200]}"
    assert r.text.strip() == TRAEFIK_404, f"{path}: not traefik's 404: {r.text[:200]!r}"


def test_the_routes_served_are_the_compose_labels(proxy: Any, stack: Any) -> None:
    """The file the proxy reads is what the labels say, with the ai-router's address here."""
    import yaml

    served = yaml.safe_load((proxy.log_path.with_name(f"{proxy.name}-routes.yml")).read_text())
    upstreams = {name: h.url for name, h in stack.services.items()}
    assert served == label_routes(stack.spec, stack.spec.services[proxy.name], upstreams)
