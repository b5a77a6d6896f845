"""The safe envelope of one engine: a grid of prompt length x concurrency, each cell measured and
judged against its objectives, and predicted from the KV model.

A cell sends `concurrency` requests of `prompt_tokens` prompt tokens and `output_tokens` output
tokens to the engine at once. What limits how many run together:
- the engine's slots: at most max-num-seqs requests run; the rest wait (`slots`);
- its KV pool: a running sequence holds ceil((prompt + output) / block_size) blocks until it
  finishes (vllm-facts.md, memory model), so at most floor(pool blocks / blocks per sequence)
  run whole; when that is below both the concurrency and max-num-seqs, the pool binds (`kv`):
  requests wait for blocks or are preempted.

The prediction uses the pool the preflight's VRAM model gives the engine (or a --kv-tokens
what-if); the measurement reads the engine's own gauges during the cell: the most requests
running, the most waiting, and preemptions. Pure functions; harness.load.envelope_probe runs
the cells.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

NONE, SLOTS, KV, UNKNOWN = "none", "slots", "kv", "unknown"
# The shortest prompt of the grid: a chat turn of a few sentences.
SHORTEST_PROMPT = 256


@dataclass(frozen=True)
class Pool:
    """An engine's limits as the prediction sees them."""

    max_num_seqs: int
    kv_tokens: int  # the KV pool in tokens (blocks x block_size)
    block_size: int

    @property
    def blocks(self) -> int:
        return self.kv_tokens // self.block_size

    def sequences_that_fit(self, tokens_per_sequence: int) -> int:
        """How many sequences of this many tokens the pool holds whole at once."""
        per = math.ceil(tokens_per_sequence / self.block_size)
        return self.blocks // per if per else self.max_num_seqs


@dataclass(frozen=True)
class Prediction:
    bound: str  # NONE, SLOTS or KV
    running: int  # requests that run together
    waiting: int  # requests that wait (or are preempted) at the cell's start


def predict(pool: Pool, prompt_tokens: int, output_tokens: int, concurrency: int) -> Prediction:
    """What the KV model says a cell does (see the module docstring)."""
    fit = pool.sequences_that_fit(prompt_tokens + output_tokens)
    running = min(concurrency, pool.max_num_seqs, fit)
    if running >= concurrency:
        bound = NONE
    elif fit < pool.max_num_seqs:
        bound = KV
    else:
        bound = SLOTS
    return Prediction(bound, running, concurrency - running)


def measured_bound(
    concurrency: int, max_num_seqs: int, running_max: float, waiting_max: float, preemptions: float
) -> str:
    """What limited the cell, from the engine's gauges: preemptions, or fewer running than both
    the concurrency and max-num-seqs while some wait, is the pool; every slot busy while not
    all run, the slots; all running at once, none. A queue seen only as the requests arrive
    (waiting before the next engine step schedules them) is no bound: all of them ran."""
    if preemptions > 0:
        return KV
    if running_max >= concurrency:
        return NONE
    if running_max >= max_num_seqs:
        return SLOTS
    if running_max > 0 and waiting_max > 0:
        return KV
    return UNKNOWN


def prompt_lengths(max_model_len: int, output_tokens: int, steps: int = 4) -> list[int]:
    """From a short chat turn up to max-model-len - output (the longest prompt the engine takes
    with room for the answer), `steps` lengths, the middle ones at even fractions of the
    longest."""
    longest = max_model_len - output_tokens
    if longest <= SHORTEST_PROMPT or steps < 2:
        return [max(1, longest)]
    middle = [round(longest * i / (steps - 1)) for i in range(1, steps - 1)]
    return sorted({SHORTEST_PROMPT, *middle, longest})


def concurrency_levels(max_num_seqs: int) -> list[int]:
    """1 to max-num-seqs + 1: the last one must wait for a slot."""
    return list(range(1, max_num_seqs + 2))


def judge(measured: Mapping[str, Any], limits: Mapping[str, float]) -> tuple[bool, str]:
    """A cell passes when every request succeeded, none was preempted, and its p95 TTFT and E2E
    are within `limits` (p95_ttft_s, p95_e2e_s; a missing key is no limit). Returns the verdict
    and why it failed ("" when it passed)."""
    why = []
    if measured.get("errors"):
        why.append(f"{measured['errors']} of {measured.get('requests')} requests failed")
    if measured.get("preemptions"):
        why.append(f"{measured['preemptions']:g} preemptions")
    for key, label, got in (("p95_ttft_s", "TTFT", "ttft_p95"), ("p95_e2e_s", "E2E", "e2e_p95")):
        limit, value = limits.get(key), measured.get(got)
        if limit is None:
            continue
        if value is None:
            why.append(f"no {label} measured")
        elif value > limit:
            why.append(f"p95 {label} {value:.2f} s > {limit:g} s")
    return not why, "; ".join(why)


def cell_doc(
    pool: Pool,
    prompt_tokens: int,
    output_tokens: int,
    concurrency: int,
    measured: Mapping[str, Any],
    limits: Mapping[str, float],
) -> dict[str, Any]:
    """One cell of record.json's envelope: the prediction, the measurement and the verdict."""
    pred = predict(pool, prompt_tokens, output_tokens, concurrency)
    bound = measured_bound(
        concurrency, pool.max_num_seqs, float(measured.get("running_max") or 0),
        float(measured.get("waiting_max") or 0), float(measured.get("preemptions") or 0),
    )  # fmt: skip
    passed, why = judge(measured, limits)
    return {
        "prompt_tokens": prompt_tokens,
        "concurrency": concurrency,
        "passed": passed,
        "why": why,
        "predicted_bound": pred.bound,
        "predicted_running": pred.running,
        "measured_bound": bound,
        "agrees": bound == pred.bound,
        "running_max": measured.get("running_max"),
        "waiting_max": measured.get("waiting_max"),
        "preemptions": measured.get("preemptions"),
        "kv_peak": measured.get("kv_peak"),
        "ttft_p95_s": measured.get("ttft_p95"),
        "e2e_p95_s": measured.get("e2e_p95"),
        "errors": measured.get("errors", 0),
        "requests": measured.get("requests", concurrency),
    }


def agreement(cells: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    """Cells whose measured bound is the predicted one, of the cells measured."""
    return sum(1 for c in cells if c["agrees"]), len(cells)
