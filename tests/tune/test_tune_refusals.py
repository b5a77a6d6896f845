"""`harness tune` refuses a bad change before it touches a running twin: the engines keep their
PIDs and keep serving, and the compose file stays byte for byte what it was.

The session's twin stands for one that `harness up` started (tests/tune/conftest.py): a tune
that wrongly went ahead would stop exactly these engines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from tune_cli import tune

from harness.stack.procs import process_identity, still_ours

pytestmark = [pytest.mark.twin, pytest.mark.any_primary_pool]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        # The classifier would see less of a conversation than the primary answers.
        ("vllm-router.--max-model-len=8192", "rule max-model-len-equal"),
        # A model is for a human to review: license, template, parser, KV size.
        ("vllm-primary.model=Qwen/Qwen3-8B", "human-review item(s) vllm-primary model"),
    ],
    ids=["preflight-rule", "human-review-item"],
)
def test_a_refused_tune_leaves_the_running_twin_alone(
    stack: Any, up_twin: tuple[Path, dict[str, str]], change: str, named: str
) -> None:
    compose, env = up_twin
    before = compose.read_bytes()
    # Each engine's process by PID and start time: a restart would give it a new one.
    procs = {s.name: process_identity(s.pid) for s in stack.services.values() if s.pid}
    assert procs and None not in procs.values(), procs
    proc = tune(compose, env, change)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, f"exit code {proc.returncode}:\n{out[-3000:]}"
    assert "refused before touching anything" in out and named in out, out[-3000:]
    assert compose.read_bytes() == before, "the compose file changed"
    assert not compose.with_name(compose.name + ".prev").exists(), "a .prev was written"
    moved = [name for name, p in procs.items() if p is None or not still_ours(p)]
    assert not moved, f"stopped or restarted by a refused tune: {moved}"
    for svc in stack.services.values():
        r = httpx.get(svc.url + "/health", timeout=30)
        assert r.status_code == 200, f"{svc.name} after the refused tune: {r.status_code}"
