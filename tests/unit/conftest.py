"""Fixtures for the harness's own unit tests: compose variants made from the real file, and the
no-op streaming server the load client is run against."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
REAL_COMPOSE = ROOT / "infra" / "docker-compose.yml"

Doc = dict[str, Any]


@pytest.fixture
def real_compose() -> Path:
    return REAL_COMPOSE


@pytest.fixture
def compose_variant(tmp_path: Path) -> Callable[[Callable[[Doc], None]], Path]:
    """Write a copy of infra/docker-compose.yml changed by `mutate` and return its path."""

    def make(mutate: Callable[[Doc], None]) -> Path:
        doc = yaml.safe_load(REAL_COMPOSE.read_text())
        mutate(doc)
        path = tmp_path / "docker-compose.yml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    return make


@pytest.fixture
def noop_server() -> Iterator[str]:
    """benchmarks/noop_stream_server.py on a free loopback port (4 token chunks per answer)."""
    from harness.stack.ports import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "noop_stream_server.py"), str(port), "4"],
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(url + "/stats", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def no_stack_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty reports root and state directory, and a test failure if any stack is brought up:
    for commands whose bad input must stop them before anything starts."""
    monkeypatch.setenv("HARNESS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HARNESS_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.delenv("HARNESS_CONFIG", raising=False)
    import harness.stack.factory as factory

    monkeypatch.setattr(factory, "make_backend", lambda *a, **k: pytest.fail("a stack started"))
    return tmp_path / "reports"
