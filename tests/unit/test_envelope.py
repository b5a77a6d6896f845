"""The safe envelope's prediction, measurement and verdict per cell (harness.load.envelope),
and `harness envelope`'s bad input refused before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.load.envelope import (
    KV,
    NONE,
    SLOTS,
    UNKNOWN,
    Pool,
    cell_doc,
    concurrency_levels,
    judge,
    measured_bound,
    predict,
    prompt_lengths,
)

MML, SEQS, OUT = 32768, 3, 256
# The twin's primary under `--kv-tokens primary=1.5x`: 49,152 tokens in blocks of 128.
WHAT_IF = Pool(SEQS, int(1.5 * MML), 128)
# The preflight's pool for the twin's primary: room for 7 full contexts.
PREFLIGHT = Pool(SEQS, 233_088, 128)


def test_the_grid_runs_from_a_chat_turn_to_max_model_len_and_one_past_max_num_seqs() -> None:
    assert prompt_lengths(MML, OUT) == [256, 10837, 21675, 32512]
    assert prompt_lengths(MML, OUT)[-1] + OUT == MML
    assert concurrency_levels(SEQS) == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "prompt, k, bound, running",
    [
        (256, 3, NONE, 3),
        (256, 4, SLOTS, 3),  # the fourth waits for a slot
        (10837, 4, SLOTS, 3),  # 87 blocks each: 4 fit, the slots bind first
        (21675, 2, NONE, 2),
        (21675, 3, KV, 2),  # 172 blocks each: 2 fit in 384, below max-num-seqs
        (32512, 1, NONE, 1),
        (32512, 2, KV, 1),  # a full context is 256 blocks: 1 fits
        (32512, 4, KV, 1),
    ],
)
def test_the_kv_model_says_where_the_slots_and_where_the_pool_bind(
    prompt: int, k: int, bound: str, running: int
) -> None:
    p = predict(WHAT_IF, prompt, OUT, k)
    assert (p.bound, p.running, p.waiting) == (bound, running, k - running)


def test_with_the_preflights_pool_only_the_slots_ever_bind() -> None:
    bounds = {
        predict(PREFLIGHT, p, OUT, k).bound
        for p in prompt_lengths(MML, OUT)
        for k in concurrency_levels(SEQS)
    }
    assert bounds == {NONE, SLOTS}


@pytest.mark.parametrize(
    "k, running, waiting, preempted, bound",
    [
        (2, 2, 0, 0, NONE),
        (2, 2, 2, 0, NONE),  # waiting only as the requests arrived: both ran together
        (4, 3, 1, 0, SLOTS),
        (3, 2, 1, 0, KV),  # a free slot and a queue: the pool
        (3, 3, 2, 1, KV),  # admitted, then preempted for blocks
        (2, 1, 1, 0, KV),
        (2, 0, 0, 0, UNKNOWN),  # nothing seen running: no answer
    ],
)
def test_the_measured_bound_comes_from_the_engines_gauges(
    k: int, running: float, waiting: float, preempted: float, bound: str
) -> None:
    assert measured_bound(k, SEQS, running, waiting, preempted) == bound


def test_a_cell_fails_on_an_error_a_preemption_or_a_limit_and_says_which() -> None:
    good = {"requests": 2, "errors": 0, "preemptions": 0, "ttft_p95": 1.0, "e2e_p95": 3.0}
    limits = {"p95_ttft_s": 2.0, "p95_e2e_s": 4.0}
    assert judge(good, limits) == (True, "")
    assert judge({**good, "errors": 1}, limits) == (False, "1 of 2 requests failed")
    assert judge({**good, "preemptions": 2.0}, limits) == (False, "2 preemptions")
    assert judge({**good, "ttft_p95": 2.5}, limits) == (False, "p95 TTFT 2.50 s > 2 s")
    assert judge({**good, "e2e_p95": None}, limits) == (False, "no E2E measured")
    assert judge({**good, "e2e_p95": 9.0}, {}) == (True, "")


def test_a_cell_records_both_bounds_and_whether_they_agree() -> None:
    measured = {"requests": 2, "errors": 0, "preemptions": 0.0, "running_max": 1.0,
                "waiting_max": 1.0, "ttft_p95": 9.0, "e2e_p95": 12.0}  # fmt: skip
    cell = cell_doc(WHAT_IF, 32512, OUT, 2, measured, {"p95_ttft_s": 15.0})
    assert (cell["predicted_bound"], cell["measured_bound"], cell["agrees"]) == (KV, KV, True)
    assert cell["passed"] and cell["predicted_running"] == 1
    # The same measurement against the preflight's pool: the model said both would run.
    off = cell_doc(PREFLIGHT, 32512, OUT, 2, measured, {})
    assert (off["predicted_bound"], off["agrees"]) == (NONE, False)


@pytest.mark.parametrize(
    "argv, config, named",
    [
        (["--target", "gpu", "--kv-tokens", "primary=1.5x"], "", "--kv-tokens is a twin what-if"),
        (["--kv-tokens", "nothing=2"], "", "--kv-tokens 'nothing=2'"),
        ([], "[envelope]\noutput_tokens = 0\n", "[envelope] output_tokens must be at least 1"),
        ([], "[envelope]\nprompt_step = 3\n", "prompt_step"),
    ],
)
def test_bad_input_exits_2_before_anything_starts(
    argv: list[str], config: str, named: str, no_stack_reports: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    path = tmp_path / "harness.toml"
    path.write_text(config)
    assert main(["--config", str(path), "envelope", *argv]) == 2
    assert named in capsys.readouterr().err
    assert not no_stack_reports.exists()


def test_no_two_requests_of_an_envelope_share_a_first_kv_block() -> None:
    from harness.load.envelope_probe import Engine, prompt_ids

    engine = Engine("http://127.0.0.1:1", "m", ids=list(range(3, 1868)))
    block = 128
    prompts = [prompt_ids(engine, n) for n in (256, 256, 10837, 10837, 10837, 32512)]
    assert [len(p) for p in prompts] == [256, 256, 10837, 10837, 10837, 32512]
    firsts = {tuple(p[:block]) for p in prompts}
    assert len(firsts) == len(prompts), "two requests share their first block: a prefix-cache hit"
