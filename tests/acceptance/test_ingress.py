"""The ingress: clients reach the ai-router through the stack's traefik, which serves the
compose file's rule (`PathPrefix(/v1) || Path(/health)`) and nothing else, and logs each request
under the load client's request id.

Where the harness started no traefik (attach, where the configured URL is already the owner's
entry; the gpu target without its edge, where production's traefik keeps running), this skips."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest

from harness.stack.ingress import (
    ACCESS_LOG_REQUEST_ID,
    REQUEST_ID_HEADER,
    access_log_path,
    label_routes,
)

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
    """A process: the file the proxy reads is what the labels say, with the ai-router's address
    here. A container: its docker provider reads the containers' own labels, which are the
    compose file's."""
    if proxy.container_id is None:
        import yaml

        routes = proxy.log_path.with_name(f"{proxy.name}-routes.yml")
        served = yaml.safe_load(routes.read_text())
        upstreams = {name: h.url for name, h in stack.services.items()}
        assert served == label_routes(stack.spec, stack.spec.services[proxy.name], upstreams)
        return
    from harness.stack.containers.client import docker_client

    client = docker_client()
    routed = []
    try:
        for name, handle in stack.services.items():
            if handle.container_id is None or name == proxy.name:
                continue
            svc = stack.spec.services.get(name)
            compose = {
                k: v for k, v in (svc.labels if svc else {}).items() if k.startswith("traefik.")
            }
            labels = client.containers.get(handle.container_id).labels
            carried = {k: v for k, v in labels.items() if k.startswith("traefik.")}
            assert carried == compose, name
            routed += [name] if carried.get("traefik.enable") == "true" else []
    finally:
        client.close()
    assert stack.router.name in routed, f"only {routed} carry traefik.enable"


def test_each_request_is_in_the_access_log_under_its_request_id(proxy: Any) -> None:
    """harness.load.waterfall joins traefik's own time to each load request by this id."""
    rid = f"ingress-{uuid.uuid4().hex}"
    r = httpx.get(proxy.url + "/health", headers={REQUEST_ID_HEADER: rid}, timeout=30)
    assert r.status_code == 200, r.text[:200]
    log = access_log_path(proxy.log_path, proxy.name)
    deadline = time.monotonic() + 30
    while True:
        lines = log.read_text().splitlines() if log.is_file() else []
        mine = [json.loads(x) for x in lines if rid in x]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(mine) == 1, f"{log}: {len(lines)} lines, none (or several) name {rid}"
    assert mine[0][ACCESS_LOG_REQUEST_ID] == rid and mine[0]["DownstreamStatus"] == 200
    assert isinstance(mine[0]["Overhead"], int)
