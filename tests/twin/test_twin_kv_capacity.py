"""The twin's KV capacity is the VRAM model's number, and a what-if override is honoured."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness.check import run_check

from harness.config import load_settings
from harness.report.run_dir import new_run_dir
from harness.stack.factory import parse_kv_overrides, twin_capability, twin_models
from harness.stack.process import ProcessBackend
from harness.twin.engines import CPU_BLOCK_SIZE

pytestmark = [pytest.mark.twin, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def test_primary_with_one_and_a_half_contexts_logs_that_capacity(tmp_path: Path) -> None:
    why = twin_capability()
    if why:
        pytest.skip(why)
    result = run_check(ROOT / "infra/docker-compose.yml", load_settings(ROOT / "harness.toml"))
    models = twin_models(progress=lambda _: None)
    kv = parse_kv_overrides(["primary=1.5x"], result.spec)
    backend = ProcessBackend(
        spec=result.spec,
        plan=result.plan,
        models=models,
        run_dir=new_run_dir("twin-kv", root=tmp_path),
        kv_overrides=kv,
        only=("vllm-primary",),
        progress=print,
    )
    try:
        stack = backend.up()
        line = stack.primary.kv
        assert line is not None, "no KV cache line in the primary's startup log"
        assert 0 <= line.tokens - 49_152 < CPU_BLOCK_SIZE, line.text
        assert line.max_concurrency == pytest.approx(1.5, abs=0.01)
        print(f"primary KV line: {line.text}")
    finally:
        backend.down()
