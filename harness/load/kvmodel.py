"""The primary's KV pool as the load profiles see it: its capacity, how much of it max-num-seqs
sequences can ever use, and the KV usage peak a kv-pressure run should show.

A sequence holds `ceil(tokens / block_size)` blocks until it finishes (vllm-facts.md, memory
model), and `vllm:kv_cache_usage_perc` counts only blocks some running sequence references:
blocks kept for prefix caching are free. So with every slot busy the usage is about
`max_num_seqs x (prompt + output tokens) / capacity`. Pure functions; the runner feeds them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CACHE_CONFIG = "vllm:cache_config_info"


@dataclass(frozen=True)
class KvCapacity:
    tokens: int
    source: str  # the metric or log line it was read from
    block_size: int | None = None
    num_gpu_blocks: int | None = None


def capacity_from_cache_config(labels: Mapping[str, str]) -> KvCapacity | None:
    """num_gpu_blocks x block_size from `vllm:cache_config_info`'s labels; None when either is
    missing or not a positive number (older servers, or a config without a block count)."""
    try:
        blocks = int(float(labels["num_gpu_blocks"]))
        size = int(float(labels["block_size"]))
    except (KeyError, ValueError):
        return None
    if blocks <= 0 or size <= 0:
        return None
    return KvCapacity(blocks * size, CACHE_CONFIG, size, blocks)


def unused_fraction(capacity_tokens: int, max_num_seqs: int, max_model_len: int) -> float:
    """The part of the pool that max-num-seqs full-length sequences can never fill; 0 when the
    pool is smaller than that."""
    if capacity_tokens <= 0:
        return 0.0
    return max(0.0, 1.0 - max_num_seqs * max_model_len / capacity_tokens)


def users_for_kv_pressure(
    max_num_seqs: int, capacity_tokens: int | None, tokens_per_sequence: int
) -> int:
    """max-num-seqs users when the pool cannot hold that many sequences (they wait for KV);
    otherwise one more, so that at least one request has to wait for a slot."""
    if capacity_tokens is not None and capacity_tokens < max_num_seqs * tokens_per_sequence:
        return max_num_seqs
    return max_num_seqs + 1


def _blocks_tokens(tokens: int, block_size: int | None) -> int:
    size = block_size or 1
    return math.ceil(tokens / size) * size


@dataclass(frozen=True)
class KvPrediction:
    low: float  # every slot's sequence just past its prefill
    high: float  # every slot's sequence at the end of its decode (at most 1)
    sequences: int  # how many whole sequences the pool holds at once (at most max-num-seqs)


def predict_peak(
    max_num_seqs: int,
    prompt_tokens_min: int,
    prompt_tokens_max: int,
    output_tokens: int,
    capacity_tokens: int,
    block_size: int | None = None,
) -> KvPrediction:
    """The band the KV usage peak of max-num-seqs concurrent long prompts should fall in.

    When the pool holds fewer whole sequences than max-num-seqs, the scheduler keeps that many
    and a part of the next one: the peak lies between those whole sequences and a full pool.
    """
    low_seq = _blocks_tokens(prompt_tokens_min, block_size)
    high_seq = _blocks_tokens(prompt_tokens_max + output_tokens, block_size)
    fit = min(max_num_seqs, capacity_tokens // max(1, high_seq))
    if fit < max_num_seqs:
        return KvPrediction(min(1.0, fit * low_seq / capacity_tokens), 1.0, fit)
    return KvPrediction(
        max_num_seqs * low_seq / capacity_tokens,
        min(1.0, max_num_seqs * high_seq / capacity_tokens),
        fit,
    )


def kv_model_problem(pool: Mapping[str, Any], tolerance: float) -> str | None:
    """Why the measured peak does not match the KV model within `tolerance` (relative), or None.

    `pool` is a load summary's `kv_pool`: capacity_tokens, block_size, max_num_seqs,
    prompt_tokens_min/max, output_tokens, measured_peak, routed_local/routed_search.

    Only requests the router sent to the primary (route local) load its KV cache. When most
    went to search, the band cannot be judged and the routing is named instead of a KV miss.
    """
    search = int(pool.get("routed_search") or 0)
    routed = search + int(pool.get("routed_local") or 0)
    if routed and 2 * search > routed:
        return (
            f"routed {search} of {routed} requests to search, so the primary served "
            f"{routed - search}: the classifier sent the long-context prompts (a document and "
            f"'Summarize the document above') to search, and the KV model's band (max-num-seqs "
            f"prompts on the primary at once) cannot be judged"
        )
    capacity = pool.get("capacity_tokens")
    if not capacity:
        return "the primary's KV capacity is unknown (no vllm:cache_config_info, no KV line)"
    if pool.get("measured_peak") is None:
        return "no samples of the primary's KV usage"
    if pool.get("prompt_tokens_min") is None or pool.get("prompt_tokens_max") is None:
        return "no request reported its prompt tokens (usage missing), nothing to predict from"
    pred = predict_peak(
        int(pool["max_num_seqs"]),
        int(pool["prompt_tokens_min"]),
        int(pool["prompt_tokens_max"]),
        int(pool.get("output_tokens") or 0),
        int(capacity),
        pool.get("block_size"),
    )
    peak = float(pool["measured_peak"])
    lo, hi = pred.low * (1 - tolerance), pred.high * (1 + tolerance)
    if lo <= peak <= hi:
        return None
    return (
        f"KV usage peaked at {peak:.3f}; the KV model predicts {pred.low:.3f}-{pred.high:.3f} "
        f"({pred.sequences} x {pool['prompt_tokens_min']:,}-{pool['prompt_tokens_max']:,} prompt "
        f"+ {pool.get('output_tokens') or 0} output tokens of {int(capacity):,}), "
        f"allowed {lo:.3f}-{hi:.3f} at tolerance {tolerance:.0%}"
        + (
            f"; {search} of {routed} requests were routed to search, not to the primary"
            if search
            else ""
        )
    )
