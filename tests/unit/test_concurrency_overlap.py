"""The concurrency burst's overlap: streams that truly run together count, a finished stream
whose last token the client read late does not."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture(scope="module")
def burst_mod() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "tests" / "acceptance" / "concurrency_burst.py"
    spec = importlib.util.spec_from_file_location("_concurrency_burst", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def burst(mod: ModuleType, spans: list[tuple[float, float]]) -> object:
    streams = [mod.Stream(index=i, ttft_s=a, last_token_s=b) for i, (a, b) in enumerate(spans)]
    return mod.Burst(
        path="primary",
        loaded="vllm-primary",
        max_num_seqs=3,
        streams=streams,
        gauges={},
        wall_s=max(b for _, b in spans),
    )


def test_a_late_read_last_token_is_not_a_fourth_running_stream(burst_mod: ModuleType) -> None:
    # Three run together for 0.7 s; the fourth's first token is read 30 ms before the client
    # read the first stream's last one, and the fifth's likewise: the CI run that read 4 of 3.
    spans = [(0.0, 0.70), (0.01, 0.72), (0.02, 0.75), (0.67, 1.40), (0.70, 1.45)]
    b = burst(burst_mod, spans)
    assert b.overlap() == 3


def test_four_streams_decoding_together_are_four(burst_mod: ModuleType) -> None:
    # An engine that ignores max-num-seqs: four run together for most of their decode.
    spans = [(0.0, 0.70), (0.01, 0.72), (0.02, 0.75), (0.05, 0.80), (0.70, 1.45)]
    assert burst(burst_mod, spans).overlap() == 4


def test_streams_run_one_after_another_are_one(burst_mod: ModuleType) -> None:
    spans = [(0.0, 0.70), (0.69, 1.40), (1.39, 2.10)]
    assert burst(burst_mod, spans).overlap() == 1


def test_the_stretch_is_a_fifth_of_the_shortest_decode_and_never_under_the_read_lag(
    burst_mod: ModuleType,
) -> None:
    assert burst(burst_mod, [(0.0, 2.0), (0.0, 3.0)]).sustained_s() == pytest.approx(0.4)
    assert burst(burst_mod, [(0.0, 0.2), (0.0, 3.0)]).sustained_s() == burst_mod.READ_LAG_S
    # Two spans that share exactly the required stretch still count as together.
    assert burst_mod.sustained_overlap([(0.0, 1.0), (0.5, 1.5)], 0.5) == 2
    assert burst_mod.sustained_overlap([(0.0, 1.0), (0.6, 1.5)], 0.5) == 1


def test_the_wait_bound_uses_the_engines_decode_time_over_visible_text(
    burst_mod: ModuleType,
) -> None:
    # A classifier whose decoded tokens carry almost no visible text: 8 ms of spans, while the
    # engine decoded each request for 1.2 s. The bound must come from the engine's 1.2 s.
    b = burst(burst_mod, [(0.0, 0.008), (0.0, 0.009), (0.0, 0.01), (1.2, 1.21), (1.2, 1.21)])
    assert b.wait_bound_s() == pytest.approx(0.5 * 2 * 0.008)
    b.decoded_s, b.decoded_requests = 6.0, 5.0
    assert b.decode_s() == pytest.approx(1.2)
    assert b.wait_bound_s() == pytest.approx(0.5 * 2 * 1.2)
