"""Goodput: the requests that met their route's latency objectives, per second.

vLLM bench's `--goodput` counts a request as good when its TTFT, TPOT and E2E are each within a
limit. The harness's objectives are p95 limits per route (`[slo.<profile>.<route>]`, see
harness.load.slo_table); here each one is applied to every request as its own limit: p95_ttft_s to
its TTFT, p95_itl_s to its TPOT (the decode time spread over the tokens after the first: one
request's typical inter-token latency) and p95_e2e_s to its E2E. A request must meet its own
route's limits and those of route `all`. Failed requests are never good.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.load.records import RequestRecord
from harness.load.slo_table import SloTable
from harness.load.stats import throughput


def _limits(table: SloTable, label: str) -> dict[str, float]:
    out = dict(table.routes.get("all", {}))
    for key, value in table.routes.get(label, {}).items():
        out[key] = min(value, out.get(key, value))
    return out


def is_good(r: RequestRecord, limits: dict[str, float]) -> bool:
    if not r.ok:
        return False
    measured = {"p95_ttft_s": r.ttft_s, "p95_itl_s": r.tpot_s, "p95_e2e_s": r.e2e_s}
    for key, limit in limits.items():
        value = measured.get(key)
        # A TPOT that does not exist (one output token) cannot break its limit.
        if value is not None and value > limit:
            return False
    return True


def goodput(table: SloTable, records: Sequence[RequestRecord]) -> dict[str, Any]:
    """Per label (route, and `all`): requests, good ones, their share and rate over the run's
    window, and the limits applied."""
    window = throughput(records)["window_s"]
    groups: dict[str, list[RequestRecord]] = {"all": list(records)}
    for r in records:
        groups.setdefault(r.label, []).append(r)
    out: dict[str, Any] = {}
    for label, recs in groups.items():
        good = [r for r in recs if is_good(r, _limits(table, r.label))]
        out[label] = {
            "requests": len(recs),
            "good": len(good),
            "fraction": len(good) / len(recs) if recs else None,
            "goodput_rps": len(good) / window if window else None,
            "limits": _limits(table, label),
        }
    return out
