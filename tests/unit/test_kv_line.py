"""The engine's KV capacity from either log format, and from a vLLM 0.32 /metrics page."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.stack.base import ServiceHandle
from harness.stack.kv_line import healthy_line, kv_from_cache_config, parse_kv_line
from harness.telemetry.prom import parse

DATA = Path(__file__).parent / "data"
PREFIX = "(EngineCore_DP0 pid=311) INFO 11-29 22:00:41"

# vLLM 0.32, vllm/v1/core/kv_cache_utils.py: one info_once record with both facts.
ONE_LINE = (
    f"{PREFIX} [kv_cache_utils.py:2328] GPU KV cache size: 230,800 tokens, Maximum "
    "concurrency for 32,768 tokens per request: 7.04x\n"
)
# Upstream releases: two records, the size first.
TWO_LINES = (
    f"{PREFIX} [gpu_worker.py:298] Available KV cache memory: 5.63 GiB\n"
    f"{PREFIX} [kv_cache_utils.py:1087] GPU KV cache size: 328,256 tokens\n"
    f"{PREFIX} [kv_cache_utils.py:1091] Maximum concurrency for 32,768 tokens per request: "
    "10.02x\n"
    f"{PREFIX} [core.py:210] init engine (profile, create kv cache, warmup model) took 41.20 s\n"
)


def test_the_one_line_form_of_vllm_0_32() -> None:
    kv = parse_kv_line("INFO start\n" + ONE_LINE + "INFO after\n")
    assert kv is not None
    assert (kv.device, kv.tokens, kv.max_model_len, kv.max_concurrency, kv.source) == (
        "GPU",
        230_800,
        32_768,
        7.04,
        "log",
    )
    assert kv.text == ONE_LINE.strip()
    assert kv.summary == ONE_LINE.split("] ", 2)[-1].strip()


def test_the_two_line_form_of_upstream_releases() -> None:
    kv = parse_kv_line(TWO_LINES)
    assert kv is not None
    assert (kv.device, kv.tokens, kv.max_model_len, kv.max_concurrency) == (
        "GPU",
        328_256,
        32_768,
        10.02,
    )
    assert kv.available_gib == 5.63
    assert kv.text.splitlines() == TWO_LINES.splitlines()[1:3]
    assert kv.summary == (
        "GPU KV cache size: 328,256 tokens, Maximum concurrency for 32,768 tokens per request: "
        "10.02x"
    )


def test_cpu_and_hisparse_device_names() -> None:
    cpu = parse_kv_line(ONE_LINE.replace("GPU KV", "CPU KV"))
    host = parse_kv_line(ONE_LINE.replace("GPU KV", "GPU + host KV"))
    assert cpu is not None and cpu.device == "CPU"
    assert host is not None and (host.device, host.tokens) == ("GPU + host", 230_800)


def test_a_size_pairs_with_the_concurrency_logged_after_it() -> None:
    # A restarted engine appends to its log: the second start's size with its own concurrency.
    restarted = ONE_LINE + ONE_LINE.replace("230,800", "49,152").replace("7.04x", "1.50x")
    kv = parse_kv_line(restarted)
    assert kv is not None and (kv.tokens, kv.max_concurrency) == (49_152, 1.5)
    # A size whose concurrency line has not been written yet is no capacity to report.
    cut = TWO_LINES.splitlines()[0:2]
    assert parse_kv_line("\n".join(cut)) is None
    assert parse_kv_line(ONE_LINE + "\n".join(cut)) is None
    assert parse_kv_line("Multiplying the GPU KV cache size by the cp_world_size 2") is None
    assert parse_kv_line("nothing here") is None


def test_capacity_from_a_vllm_0_32_metrics_page() -> None:
    labels = parse((DATA / "vllm-0.32-primary-metrics.txt").read_text()).cache_config()
    kv = kv_from_cache_config(labels, 32_768)
    assert kv is not None
    assert (kv.tokens, kv.block_size, kv.source, kv.device) == (230_800, 16, "metrics", "")
    assert kv.max_concurrency == pytest.approx(7.0435, abs=1e-4)
    assert kv.available_gib is None
    assert 'num_gpu_blocks="14425"' in kv.text
    assert kv.summary.endswith("7.04x (from /metrics)")


def test_capacity_from_blocks_where_the_server_exports_no_token_count() -> None:
    older = {"block_size": "16", "num_gpu_blocks": "20516", "cache_dtype": "auto"}
    kv = kv_from_cache_config(older, 32_768)
    assert kv is not None
    assert (kv.tokens, kv.max_concurrency) == (328_256, pytest.approx(328_256 / 32_768))
    # vLLM's group-aware token count wins over blocks x block size.
    assert kv_from_cache_config({**older, "kv_cache_size_tokens": "300000"}, 32_768).tokens == (
        300_000
    )
    assert kv_from_cache_config({**older, "num_gpu_blocks": "None"}, 32_768) is None
    assert kv_from_cache_config({}, 32_768) is None


def test_healthy_line_reads_the_kv_line_and_the_memory_breakdown(tmp_path: Path) -> None:
    log = tmp_path / "vllm-primary.log"
    log.write_text(
        f"{PREFIX} [gpu_model_runner.py:5150] Model loading took 31.62 GiB memory and "
        "12.031245 seconds\n"
        f"{PREFIX} [gpu_worker.py:1031] Free memory on device (94.47/95.59 GiB) on startup. "
        "Desired GPU memory utilization is (0.65, 62.14 GiB). Actual usage is 31.9 GiB for "
        "consumed memory (weights + non-torch), 2.05 GiB for peak activation, and 0.11 GiB for "
        "CUDAGraph memory. Replace gpu_memory_utilization config with "
        "`--kv-cache-memory=29989609144` (27.93 GiB) to fit into requested memory, or "
        "`--kv-cache-memory=64703682314` (60.26 GiB) to fully utilize gpu memory. Current kv "
        "cache memory in use is 28.19 GiB.\n" + TWO_LINES
    )
    handle = ServiceHandle("vllm-primary", "primary", "http://127.0.0.1:8002")
    line = healthy_line(handle, log)
    assert handle.kv is not None and handle.kv.tokens == 328_256
    assert handle.memory is not None and handle.memory.kv_cache_gib == 28.19
    assert line.endswith(
        "; GPU KV cache size: 328,256 tokens, Maximum concurrency for 32,768 "
        "tokens per request: 10.02x"
    )

    attached = ServiceHandle("vllm-router", "classifier", "http://127.0.0.1:8001")
    assert healthy_line(attached, tmp_path / "absent.log").startswith("vllm-router: healthy in")
    assert attached.kv is None and attached.memory is None
