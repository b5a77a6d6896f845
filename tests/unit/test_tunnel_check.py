"""cloudflared's checks on gpu and attach: the token in `.secrets` and in the container's
environment is there and well formed, every ingress rule it serves (its last logged
configuration, or a mounted config.yml) points at traefik, and not knowing is a WARN. Recorded
log lines, a fake env file and a fake `docker inspect`; no Docker. A planted token never shows
in any message."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness.cli import main
from harness.compose import StackSpec, load_stack
from harness.errors import CapabilityError
from harness.report import stack_facts
from harness.stack import discover
from harness.stack import doctor_checks as dc
from harness.stack.base import ServiceHandle, Stack
from harness.stack.tunnel_check import TunnelCheck, token_problem, tunnel_checks
from harness.stack.tunnel_config import Rule, rules_from_log, traefik_origin

SECRET = "planted-tunnel-secret-5e1d2c9a7b"
ACCOUNT = "planted-account-0c4f"
TUNNEL_ID = "6ff4dfd7-2b77-4a4f-84d9-3241bea658dc"


def token(doc: dict[str, Any] | None = None) -> str:
    doc = {"a": ACCOUNT, "t": TUNNEL_ID, "s": SECRET} if doc is None else doc
    return base64.b64encode(json.dumps(doc).encode()).decode()


GOOD = token()
# What may never be printed: the token, each part of it, and its base64 without padding.
NEVER = (GOOD, GOOD.rstrip("="), SECRET, ACCOUNT, TUNNEL_ID)


def config_line(rules: list[dict[str, str]], version: int = 4) -> str:
    """cloudflared's console log line for an applied remote configuration: zerolog quotes the
    JSON document as a Go string (orchestration/orchestrator.go: Str("config", ...))."""
    doc = json.dumps({"ingress": rules, "warp-routing": {"enabled": False}}, separators=(",", ":"))
    quoted = doc.replace("\\", "\\\\").replace('"', '\\"')
    return (
        f'2024-12-10T09:14:03Z INF Updated to new configuration config="{quoted}" version={version}'
    )


TO_TRAEFIK = [
    {"hostname": "ai.example.com", "service": "http://traefik:80", "originRequest": {}},
    {"service": "http_status:404"},
]
TO_ROUTER = [
    {"hostname": "ai.example.com", "service": "http://ai-router:8080"},
    {"service": "http_status:404"},
]
STARTUP = [
    f"2024-12-10T09:14:01Z INF Starting tunnel tunnelID={TUNNEL_ID}",
    "2024-12-10T09:14:01Z INF Version 2024.12.2 (Checksum 1f2e)",
    "2024-12-10T09:14:02Z INF Registered tunnel connection connIndex=0 connection=645e1fe2 "
    "event=0 ip=198.41.200.13 location=ams01 protocol=quic",
]


def log(*lines: str) -> str:
    return "\n".join([*STARTUP, *lines]) + "\n"


class FakeContainer:
    def __init__(self, env_token: str | None, logs: str, state: str = "running") -> None:
        self.id, self.name = "cf-id", "cloudflared"
        self.labels = {"com.docker.compose.project": "ai-stack",
                       "com.docker.compose.service": "cloudflared"}  # fmt: skip
        env = ["PATH=/usr/local/bin", *([f"TUNNEL_TOKEN={env_token}"] if env_token else [])]
        self.attrs = {"Id": "cf-id", "Name": "/cloudflared", "State": {"Status": state},
                      "Config": {"Env": env}}  # fmt: skip
        self._logs = logs

    def logs(self, stdout: bool = True, stderr: bool = True, tail: int = 0) -> bytes:
        return self._logs.encode()


class FakeClient:
    """`docker ps -a` with label filters, and the one container it knows."""

    def __init__(self, container: FakeContainer | None = None) -> None:
        self.container = container
        self.containers = SimpleNamespace(list=self._list, get=lambda cid: self.container)
        self.closed = False

    def _list(self, all: bool = False, filters: Any = None) -> list[FakeContainer]:
        return [self.container] if self.container is not None else []

    def info(self) -> dict[str, Any]:
        return {"ServerVersion": "27.3.1", "DockerRootDir": "/var/lib/docker"}

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def spec(compose_variant: Callable[[Callable[[dict[str, Any]], None]], Path]) -> StackSpec:
    return load_stack(compose_variant(lambda doc: None))


def secrets(spec: StackSpec, **values: str) -> Path:
    path = spec.path.parent / ".secrets"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path


def by_name(checks: list[TunnelCheck]) -> dict[str, TunnelCheck]:
    return {c.name: c for c in checks}


def assert_no_token(*texts: str) -> None:
    for text in texts:
        for value in NEVER:
            assert value not in text


# -- the token --------------------------------------------------------------------------------


def test_a_good_token_and_an_origin_at_traefik_pass(spec: StackSpec) -> None:
    secrets(spec, CF_TUNNEL_TOKEN=GOOD, XAI_API_KEY="x")
    client = FakeClient(FakeContainer(GOOD, log(config_line(TO_TRAEFIK))))
    checks = by_name(tunnel_checks(spec, client))
    assert checks["tunnel-token"].status == "OK", checks["tunnel-token"].detail
    assert "TUNNEL_TOKEN of container cloudflared (running)" in checks["tunnel-token"].detail
    assert "CF_TUNNEL_TOKEN in " in checks["tunnel-token"].detail
    origin = checks["tunnel-origin"]
    assert origin.status == "OK", origin.detail
    assert "(version 4)" in origin.detail and "ai.example.com -> http://traefik:80" in origin.detail
    assert_no_token(*(c.detail for c in checks.values()))


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (None, "is not set"),
        ("", "is empty"),
        ("not base64 at all!", "is not base64"),
        (base64.b64encode(b"\xff\xfe-binary").decode(), "not of JSON"),
        (base64.b64encode(b"[1, 2]").decode(), "not of an object"),
        (token({"a": ACCOUNT, "t": TUNNEL_ID}), "without s (secret)"),
        (token({"a": ACCOUNT, "t": "", "s": SECRET}), "without t (tunnel id)"),
    ],
)
def test_a_missing_or_malformed_token_says_what_is_wrong(value: str | None, why: str) -> None:
    problem = token_problem(value)
    assert problem is not None and why in problem
    assert_no_token(problem)
    assert token_problem(GOOD) is None
    assert token_problem(GOOD.rstrip("=")) is None  # copied without its padding


def test_missing_and_malformed_tokens_fail_naming_the_file_and_the_variable(
    spec: StackSpec,
) -> None:
    secrets(spec, XAI_API_KEY="x")
    check = by_name(tunnel_checks(spec, None))["tunnel-token"]
    assert check.status == "FAIL"
    assert "CF_TUNNEL_TOKEN in " in check.detail and ".secrets is not set" in check.detail
    secrets(spec, CF_TUNNEL_TOKEN="")
    assert "is empty" in by_name(tunnel_checks(spec, None))["tunnel-token"].detail
    bad = token({"a": ACCOUNT, "t": TUNNEL_ID})
    secrets(spec, CF_TUNNEL_TOKEN=bad)
    check = by_name(tunnel_checks(spec, None))["tunnel-token"]
    assert check.status == "FAIL" and "without s (secret)" in check.detail
    assert "CF_TUNNEL_TOKEN" in check.detail and bad not in check.detail


def test_the_running_containers_token_is_checked_too(spec: StackSpec) -> None:
    secrets(spec, CF_TUNNEL_TOKEN=GOOD)
    lines = log(config_line(TO_TRAEFIK))
    check = by_name(tunnel_checks(spec, FakeClient(FakeContainer(None, lines))))["tunnel-token"]
    assert check.status == "FAIL"
    assert "TUNNEL_TOKEN in container cloudflared's environment is not set" in check.detail
    broken = FakeClient(FakeContainer(GOOD[:-7], lines, state="restarting"))
    check = by_name(tunnel_checks(spec, broken))["tunnel-token"]
    assert check.status == "FAIL" and "TUNNEL_TOKEN in container cloudflared" in check.detail
    # The container runs with a good one, but the next `make up` would hand it none.
    secrets(spec, XAI_API_KEY="x")
    check = by_name(tunnel_checks(spec, FakeClient(FakeContainer(GOOD, lines))))["tunnel-token"]
    assert check.status == "FAIL" and "the next `make up` starts it without" in check.detail


def test_without_secrets_file_or_container_the_token_is_a_warning(spec: StackSpec) -> None:
    check = by_name(tunnel_checks(spec, None))["tunnel-token"]
    assert check.status == "WARN" and "token not known" in check.detail


# -- the origin -------------------------------------------------------------------------------


def test_an_origin_straight_to_the_router_fails_naming_the_rule(spec: StackSpec) -> None:
    secrets(spec, CF_TUNNEL_TOKEN=GOOD)
    client = FakeClient(FakeContainer(GOOD, log(config_line(TO_ROUTER, version=7))))
    check = by_name(tunnel_checks(spec, client))["tunnel-origin"]
    assert check.status == "FAIL"
    assert "rule ai.example.com -> http://ai-router:8080 sends to ai-router:8080" in check.detail
    assert "not to traefik (traefik port 80)" in check.detail and "(version 7)" in check.detail
    assert "http://traefik:80" in check.detail  # the fix


def test_the_last_logged_configuration_is_the_one_served(spec: StackSpec) -> None:
    secrets(spec, CF_TUNNEL_TOKEN=GOOD)
    fixed = log(config_line(TO_ROUTER, 3), "... INF Registered tunnel", config_line(TO_TRAEFIK, 4))
    assert (
        by_name(tunnel_checks(spec, FakeClient(FakeContainer(GOOD, fixed))))["tunnel-origin"].status
        == "OK"
    )
    broke = log(config_line(TO_TRAEFIK, 4), config_line(TO_ROUTER, 5))
    assert (
        by_name(tunnel_checks(spec, FakeClient(FakeContainer(GOOD, broke))))["tunnel-origin"].status
        == "FAIL"
    )


@pytest.mark.parametrize(
    ("service", "ok"),
    [
        ("http://traefik:80", True),
        ("http://traefik", True),  # http's own port
        ("http://traefik/", True),
        ("http://traefik:8080", False),  # the host's published port, not the entrypoint
        ("http://127.0.0.1:8080", False),  # loopback of cloudflared's own container
        ("https://traefik:443", False),
        ("tcp://traefik:80", False),
        ("hello_world", False),
    ],
)
def test_only_traefiks_name_on_its_entrypoint_port_counts(
    spec: StackSpec, service: str, ok: bool
) -> None:
    secrets(spec, CF_TUNNEL_TOKEN=GOOD)
    rules = [{"hostname": "ai.example.com", "service": service}, {"service": "http_status:404"}]
    client = FakeClient(FakeContainer(GOOD, log(config_line(rules))))
    check = by_name(tunnel_checks(spec, client))["tunnel-origin"]
    assert (check.status == "OK") is ok, check.detail


def test_rules_that_only_answer_themselves_reach_nothing(spec: StackSpec) -> None:
    secrets(spec, CF_TUNNEL_TOKEN=GOOD)
    client = FakeClient(FakeContainer(GOOD, log(config_line([{"service": "http_status:404"}]))))
    check = by_name(tunnel_checks(spec, client))["tunnel-origin"]
    assert check.status == "FAIL" and "no rule sends traffic to traefik" in check.detail


def test_json_log_lines_and_colours_are_read() -> None:
    config = json.dumps({"ingress": TO_ROUTER})
    event = {"level": "info", "version": 9, "config": config,
             "message": "Updated to new configuration"}  # fmt: skip
    rules, version = rules_from_log(json.dumps(event)) or ([], "")
    assert version == "9" and rules[0] == Rule("http://ai-router:8080", "ai.example.com")
    coloured = config_line(TO_TRAEFIK).replace("config=", "\x1b[36mconfig=\x1b[0m")
    rules, _ = rules_from_log(coloured) or ([], "")
    assert [r.service for r in rules] == ["http://traefik:80", "http_status:404"]
    assert rules_from_log(log()) is None


def test_not_known_is_a_warning_not_a_pass(spec: StackSpec) -> None:
    secrets(spec, CF_TUNNEL_TOKEN=GOOD)
    check = by_name(tunnel_checks(spec, FakeClient()))["tunnel-origin"]
    assert check.status == "WARN" and "no container of service cloudflared" in check.detail
    young = FakeClient(FakeContainer(GOOD, log(), state="restarting"))
    check = by_name(tunnel_checks(spec, young))["tunnel-origin"]
    assert check.status == "WARN" and "(restarting) has logged no ingress" in check.detail
    check = by_name(tunnel_checks(spec, None))["tunnel-origin"]
    assert check.status == "WARN" and "no Docker engine answers" in check.detail


def test_a_mounted_config_yml_is_read_for_a_locally_managed_tunnel(
    compose_variant: Callable[[Callable[[dict[str, Any]], None]], Path],
) -> None:
    def mount(doc: dict[str, Any]) -> None:
        doc["services"]["cloudflared"]["volumes"] = ["./cloudflared:/etc/cloudflared:ro"]

    spec = load_stack(compose_variant(mount))
    (spec.path.parent / "cloudflared").mkdir()
    config = spec.path.parent / "cloudflared" / "config.yml"
    config.write_text(
        "tunnel: 6ff4dfd7\ningress:\n  - hostname: ai.example.com\n"
        "    service: http://ai-router:8080\n  - service: http_status:404\n"
    )
    check = by_name(tunnel_checks(spec, FakeClient()))["tunnel-origin"]
    assert (
        check.status == "FAIL"
        and "config.yml: rule ai.example.com -> http://ai-router:8080" in (check.detail)
    )
    config.write_text("ingress:\n  - service: http://traefik:80\n")
    assert by_name(tunnel_checks(spec, FakeClient()))["tunnel-origin"].status == "OK"


def test_traefik_is_the_compose_files_service_on_its_web_entrypoint(spec: StackSpec) -> None:
    origin = traefik_origin(spec)
    assert origin.hosts == ("traefik",) and origin.ports == (80,)


# -- doctor and the run record ----------------------------------------------------------------


def test_doctor_attach_prints_the_tunnel_lines_and_never_the_token(
    monkeypatch: pytest.MonkeyPatch, spec: StackSpec, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets(spec, CF_TUNNEL_TOKEN=GOOD)
    client = FakeClient(FakeContainer(GOOD, log(config_line(TO_TRAEFIK))))
    monkeypatch.setattr(dc, "docker_client", lambda timeout_s: client)
    assert main(["doctor", "--target", "attach", "--compose", str(spec.path)]) == 0
    out, err = capsys.readouterr()
    assert [ln.split(":")[0] for ln in out.splitlines()] == [
        "OK   compose", "OK   docker", "OK   tunnel-token", "OK   tunnel-origin", "ready"
    ]  # fmt: skip
    client.container = FakeContainer(GOOD, log())  # nothing logged yet: WARN, still ready
    assert main(["doctor", "--target", "attach", "--compose", str(spec.path), "--json"]) == 0
    json_out, json_err = capsys.readouterr()
    status = {c["name"]: c["status"] for c in json.loads(json_out)["checks"]}
    assert status["tunnel-origin"] == "WARN"
    secrets(spec, CF_TUNNEL_TOKEN=GOOD[:20])
    assert main(["doctor", "--target", "attach", "--compose", str(spec.path)]) == 1
    bad_out, bad_err = capsys.readouterr()
    assert "FAIL tunnel-token: CF_TUNNEL_TOKEN in " in bad_out
    assert_no_token(out, err, json_out, json_err, bad_out, bad_err, GOOD[:20])


def test_doctor_attach_without_docker_warns_and_still_reads_the_secrets_file(
    monkeypatch: pytest.MonkeyPatch, spec: StackSpec, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_engine(timeout_s: int) -> Any:
        raise CapabilityError("no Docker engine answers (ConnectionError)")

    monkeypatch.setattr(dc, "docker_client", no_engine)
    secrets(spec, CF_TUNNEL_TOKEN=GOOD)
    assert main(["doctor", "--target", "attach", "--compose", str(spec.path)]) == 0
    out = capsys.readouterr().out
    assert "WARN docker: no Docker engine answers" in out and "attach needs none" in out
    assert "OK   tunnel-token: CF_TUNNEL_TOKEN in " in out
    assert "WARN tunnel-origin: origin not known" in out
    assert out.splitlines()[-1] == "ready: no check failed (2 WARN above: not known here)"
    secrets(spec, CF_TUNNEL_TOKEN="")
    assert main(["doctor", "--target", "attach", "--compose", str(spec.path)]) == 1
    assert_no_token(out, capsys.readouterr().out)


def test_the_run_record_holds_the_tunnel_checks_on_gpu_and_not_on_the_twin(
    monkeypatch: pytest.MonkeyPatch, spec: StackSpec, tmp_path: Path
) -> None:
    secrets(spec, CF_TUNNEL_TOKEN=GOOD)
    client = FakeClient(FakeContainer(GOOD, log(config_line(TO_ROUTER))))
    monkeypatch.setattr(discover, "docker_or_none", lambda: client)
    gpu = Stack("gpu", spec, tmp_path)
    gpu.services["ai-router"] = ServiceHandle("ai-router", "router", "")
    section = stack_facts.stack_section(gpu)
    assert section["tunnel"]["checked"] is True and client.closed
    status = {c["name"]: c["status"] for c in section["tunnel"]["checks"]}
    assert status == {"tunnel-token": "OK", "tunnel-origin": "FAIL"}
    assert any(n.startswith("tunnel-origin FAIL: ") for n in section["notes"])
    assert_no_token(json.dumps(section))
    twin = stack_facts.stack_section(Stack("twin", spec, tmp_path))
    assert twin["tunnel"] == {
        "checked": False,
        "checks": [],
        "detail": "not checked: substitution tunnel",
    }
    assert "tunnel: not checked: substitution tunnel" in twin["notes"]
