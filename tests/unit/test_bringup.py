"""Bring-up order, health gating and teardown of the process backend, with stand-in services."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from harness.config import Settings
from harness.errors import StartupError
from harness.stack.base import ServiceHandle
from harness.stack.process import ProcessBackend, TwinModelDirs
from harness.stack.procs import group_alive
from harness.vram.check import run_check

STUB = str(Path(__file__).with_name("stub_service.py"))


class StubBackend(ProcessBackend):
    """The real backend, with every service replaced by stub_service.py."""

    delays: dict[str, float]
    fail: dict[str, int]
    events: Path

    def _stub(self, name: str, role: str, port: int):
        argv = [
            sys.executable,
            STUB,
            str(port),
            str(self.delays.get(name, 0.2)),
            str(self.events),
            name,
        ]
        if name in self.fail:
            argv.append(str(self.fail[name]))
        return ServiceHandle(name, role, f"http://127.0.0.1:{port}"), argv, dict(os.environ)

    def _engine(self, stack, svc, port, log):
        return self._stub(svc.name, svc.role, port)

    def _router(self, stack, svc, port, log):
        return self._stub(svc.name, "router", port)

    def _xai(self, name, port, log):
        return self._stub(name, "xai", port)


def make(real_compose: Path, tmp_path: Path, **kw) -> StubBackend:
    result = run_check(real_compose, Settings(path=None, environ={}))
    (tmp_path / "run" / "logs").mkdir(parents=True)
    b = StubBackend(
        spec=result.spec,
        plan=result.plan,
        models=TwinModelDirs(tmp_path, tmp_path),
        run_dir=tmp_path / "run",
        startup_timeout_s=kw.pop("timeout", 20.0),
        progress=lambda _: None,
    )
    b.delays = kw.pop("delays", {})
    b.fail = kw.pop("fail", {})
    b.events = tmp_path / "events.jsonl"
    return b


def read_events(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text().splitlines()]


def test_services_start_in_compose_order_each_after_the_previous_is_healthy(
    real_compose: Path, tmp_path: Path
) -> None:
    b = make(real_compose, tmp_path, delays={"vllm-router": 1.0, "vllm-primary": 0.5})
    stack = b.up()
    try:
        order = ["vllm-router", "vllm-primary", "fake-xai", "ai-router", "traefik"]
        assert list(stack.services) == order
        ev = read_events(b.events)
        starts = [e["name"] for e in ev if e["event"] == "start"]
        assert starts == order[:-1]  # the stubs' own events; traefik is the real binary
        listening = {e["name"]: e["t"] for e in ev if e["event"] == "listening"}
        started = {e["name"]: e["t"] for e in ev if e["event"] == "start"}
        assert started["vllm-primary"] >= listening["vllm-router"]
        assert started["fake-xai"] >= listening["vllm-primary"]
        assert started["ai-router"] >= listening["fake-xai"]
        # traefik started once the ai-router answered, and serves its /health on its own port.
        proxy = stack.services["traefik"]
        assert proxy.started_at is not None and proxy.started_at >= listening["ai-router"]
        assert stack.entry is proxy and proxy.url != stack.router.url
        router = stack.services["vllm-router"]
        assert router.time_to_healthy_s is not None and router.time_to_healthy_s >= 1.0
        assert router.kv is not None and router.kv.tokens == 49_152
        assert (tmp_path / "run" / "logs" / "vllm-router.log").is_file()
        pids = [s.pid for s in stack.services.values()]
    finally:
        b.down()
    assert pids and not any(group_alive(p) for p in pids if p)


def test_a_service_that_exits_fails_fast_with_its_log_and_tears_down_the_rest(
    real_compose: Path, tmp_path: Path
) -> None:
    b = make(real_compose, tmp_path, fail={"vllm-primary": 3}, timeout=60.0)
    started = time.monotonic()
    with pytest.raises(StartupError) as exc:
        b.up()
    assert time.monotonic() - started < 20  # fails on exit, not at the 60 s timeout
    err = exc.value
    assert err.service == "vllm-primary" and "exited with code 3" in str(err)
    assert "fatal error during startup" in err.log_tail
    assert "should-not-leak" not in err.log_tail
    ev = read_events(b.events)
    assert [e["name"] for e in ev if e["event"] == "start"] == ["vllm-router", "vllm-primary"]
    assert b.stack is not None
    router_pid = b.stack.services["vllm-router"].pid
    assert router_pid and not group_alive(router_pid)


def test_a_service_that_never_becomes_healthy_times_out_naming_it(
    real_compose: Path, tmp_path: Path
) -> None:
    b = make(real_compose, tmp_path, delays={"vllm-router": 30.0}, timeout=2.0)
    with pytest.raises(StartupError, match=r"vllm-router: not healthy within 2 s") as exc:
        b.up()
    assert "loading" in exc.value.log_tail
    pid = b.stack.services["vllm-router"].pid if b.stack else None
    assert pid and not group_alive(pid)
