"""An attached stack's engines are found on this machine (the compose project's container, or
the process listening on the port), so NVML's GPU processes can be told apart per engine."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.compose import load_stack
from harness.config import Settings
from harness.stack import attach
from harness.stack.base import ServiceHandle, Stack
from harness.stack.discover import compose_container, discover, listening_pid, parent_of
from harness.telemetry.nvml import GpuProcess, GpuSnapshot
from harness.units import GIB
from harness.vram.check import run_check
from harness.vram.usage import engine_use

TCP_HEAD = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"


def fake_proc(tmp_path: Path, port: int, procs: dict[int, tuple[str, int, bool]]) -> Path:
    """A /proc with one listening socket (inode 4242) on `port`; procs: pid -> (comm, parent,
    holds the socket)."""
    proc = tmp_path / "proc"
    (proc / "net").mkdir(parents=True)
    row = f"   0: 0100007F:{port:04X} 00000000:0000 0A 00000000:00000000 00:00000000 00000000"
    (proc / "net" / "tcp").write_text(f"{TCP_HEAD}{row}     0        0 4242 1 0 100 0 0 10 0\n")
    for pid, (comm, parent, holds) in procs.items():
        d = proc / str(pid)
        (d / "fd").mkdir(parents=True)
        (d / "stat").write_text(f"{pid} ({comm}) S {parent} {pid} {pid} 0 -1\n")
        (d / "comm").write_text(comm + "\n")
        os.symlink("/dev/null", d / "fd" / "0")
        if holds:
            os.symlink("socket:[4242]", d / "fd" / "3")
    return proc


def test_the_top_process_that_listens(tmp_path: Path) -> None:
    # A server (100) and its worker (101) share the socket; 102 is unrelated.
    proc = fake_proc(
        tmp_path,
        8001,
        {100: ("python3", 1, True), 101: ("python3", 100, True), 102: ("bash", 1, False)},
    )
    assert listening_pid(8001, proc) == 100
    assert listening_pid(8002, proc) is None
    assert parent_of(101, proc) == 100


def test_dockers_port_proxy_is_not_the_engine(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, 8001, {7: ("docker-proxy", 1, True)})
    assert listening_pid(8001, proc) is None


def test_a_real_listening_socket_is_found() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert listening_pid(s.getsockname()[1]) == os.getpid()


@dataclass
class FakeContainer:
    id: str
    name: str
    attrs: dict[str, Any]


@dataclass
class FakeClient:
    containers_by_service: dict[str, list[FakeContainer]]
    asked: list[dict[str, Any]] = field(default_factory=list)
    closed: bool = False

    @property
    def containers(self) -> FakeClient:
        return self

    def list(self, filters: dict[str, Any]) -> list[FakeContainer]:
        self.asked.append(filters)
        service = filters["label"][1].split("=", 1)[1]
        return self.containers_by_service.get(service, [])

    def close(self) -> None:
        self.closed = True


def container(cid: str, name: str, pid: int, host_port: str | None) -> FakeContainer:
    ports = {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": host_port}]} if host_port else {}
    return FakeContainer(cid, name, {"State": {"Pid": pid}, "NetworkSettings": {"Ports": ports}})


C1, C2 = "a" * 64, "b" * 64


def test_the_compose_projects_container_by_its_labels_and_port() -> None:
    client = FakeClient({"vllm-router": [container(C1, "vllm-router", 4242, "8001")]})
    found = compose_container(client, "ai-stack", "vllm-router", 8001)
    assert found is not None and (found.container_id, found.pid) == (C1, 4242)
    assert client.asked[0]["label"] == [
        "com.docker.compose.project=ai-stack",
        "com.docker.compose.service=vllm-router",
    ]
    # A container publishing another port does not serve this URL.
    assert compose_container(client, "ai-stack", "vllm-router", 9001) is None
    # One that publishes nothing is reached through a proxy: it is the service.
    proxied = FakeClient({"ai-router": [container(C2, "ai-router", 77, None)]})
    assert compose_container(proxied, "ai-stack", "ai-router", 8080) is not None


def test_a_remote_url_is_not_looked_for() -> None:
    client = FakeClient({"vllm-router": [container(C1, "vllm-router", 4242, "8001")]})
    assert discover("vllm-router", "http://gpu-box:8001", "ai-stack", client) is None
    assert client.asked == []


def test_attach_handles_carry_container_and_pid(
    real_compose: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = FakeClient({"vllm-router": [container(C1, "vllm-router", 4242, "8001")]})
    monkeypatch.setattr(attach, "docker_or_none", lambda: client)
    spec = load_stack(real_compose)
    stack = Stack("attach", spec, tmp_path)
    for name, role, port in (("vllm-router", "classifier", 8001), ("vllm-primary", "primary", 1)):
        stack.services[name] = ServiceHandle(name, role, f"http://127.0.0.1:{port}")
    stack.services["ai-router"] = ServiceHandle("ai-router", "router", "http://127.0.0.1:8080")
    attach.locate(stack)
    router = stack.services["vllm-router"]
    assert (router.container_id, router.pid) == (C1, 4242)
    assert stack.services["ai-router"].pid is None  # load runs watch only what they started
    assert stack.notes == [
        "attach: vllm-router: container vllm-router of project ai-stack (pid 4242)",
        "attach: vllm-primary: no process found for http://127.0.0.1:1",
    ]
    assert client.closed


def test_nvml_processes_are_matched_through_their_parents(real_compose: Path) -> None:
    plan = run_check(real_compose, Settings(path=None, environ={})).plan
    # EngineCore processes 31 and 41 under the API servers 30 and 40 that listen on the ports.
    parents = {31: 30, 30: 1, 41: 40, 40: 1, 50: 1}
    snap = GpuSnapshot(
        0, "T", 96 * GIB, 80 * GIB, 16 * GIB, 0, 0,
        (GpuProcess(31, 14 * GIB), GpuProcess(41, 63 * GIB), GpuProcess(50, GIB)),
    )  # fmt: skip
    engines = [
        ServiceHandle("vllm-router", "classifier", "u", pid=30),
        ServiceHandle("vllm-primary", "primary", "u", pid=40),
    ]
    uses = engine_use(snap, engines, plan, {}, parent_of=parents.get)
    assert [(u.service, u.pids) for u in uses] == [("vllm-router", (31,)), ("vllm-primary", (41,))]
    # PID 1 owns everything: a handle that names it matches nothing.
    init = [ServiceHandle("vllm-router", "classifier", "u", pid=1)]
    assert engine_use(snap, init, plan, {}, parent_of=parents.get)[0].pids == ()


def test_an_attached_twin_that_harness_up_started_has_its_session_log_found(
    tmp_path: Path,
) -> None:
    from harness.stack import state

    path = tmp_path / "stack.json"
    doc = {
        "target": "twin",
        "run_dir": str(tmp_path / "runs" / "r1"),
        "services": [
            {"name": "vllm-router", "role": "classifier", "url": "http://127.0.0.1:4001"},
            {"name": "ai-router", "role": "router", "url": "http://127.0.0.1:4003"},
        ],
    }
    path.write_text(json.dumps(doc))
    want = tmp_path / "runs" / "r1" / "logs" / "ai-router-session.jsonl"
    assert state.twin_session_log("http://127.0.0.1:4003/", path) == want
    # Another router (the production stack's), or a state that is not a twin's: not this log.
    assert state.twin_session_log("http://127.0.0.1:8080", path) is None
    path.write_text(json.dumps({**doc, "target": "twin-docker"}))
    assert state.twin_session_log("http://127.0.0.1:4003", path) is None
