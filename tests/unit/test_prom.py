from __future__ import annotations

import math

import pytest

from harness.telemetry.prom import KV_USAGE, histogram_quantile, parse

TEXT = """
# HELP vllm:kv_cache_usage_perc KV-cache usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="primary"} 0.42
vllm:num_requests_waiting_by_reason{engine="0",model_name="primary",reason="capacity"} 2.0
vllm:num_requests_waiting_by_reason{engine="0",model_name="primary",reason="deferred"} 0.0
vllm:num_preemptions_total{engine="0",model_name="primary"} 3.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.1",model_name="primary"} 2.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="1.0",model_name="primary"} 6.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="primary"} 6.0
vllm:cache_config_info{block_size="128",cache_dtype="auto",num_gpu_blocks="384"} 1.0
"""


def test_gauges_counters_and_labels() -> None:
    s = parse(TEXT)
    assert s.value(KV_USAGE) == 0.42
    assert s.value("vllm:num_requests_waiting_by_reason", reason="capacity") == 2.0
    assert s.value("vllm:num_preemptions_total") == 3.0
    assert s.value("vllm:absent", default=-1.0) == -1.0
    assert s.cache_config()["num_gpu_blocks"] == "384"


def test_old_metric_names_are_a_fallback() -> None:
    s = parse('vllm:gpu_cache_usage_perc{model_name="m"} 0.7\n')
    assert s.value(KV_USAGE) == 0.7


def test_histogram_and_quantile() -> None:
    buckets = parse(TEXT).histogram("vllm:time_to_first_token_seconds")
    assert buckets == {0.1: 2.0, 1.0: 6.0, math.inf: 6.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1 + 0.9 * (3 - 2) / 4)
    assert histogram_quantile(0.5, {}) is None
