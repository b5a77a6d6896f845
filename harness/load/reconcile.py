"""The client's figures against an engine's own counters over the same window: requests, prompt
and output tokens, and TTFT.

Why TTFT can be checked at all: for each request the engine's TTFT (vLLM: first token's
iteration time minus the request's arrival in the engine, both after the HTTP request was read)
lies inside the client's (from just before the first byte is sent to the read that carried the
first token). So, over the same requests:
- the client's mean TTFT is at least the engine's exact mean (`_sum/_count`), and exceeds it
  by the client's, the HTTP server's and (through the router) the router's overhead;
- at every bucket bound b of the engine's histogram, no more client requests than engine
  requests have a TTFT <= b. This needs no interpolation inside a bucket.
A client clock that starts late (after the request left) breaks both: its TTFTs shrink below
the engine's. Through the router, the router's own classification time (X-Classifier-Ms, a part
of the client's interval that the primary never sees) is taken off first.

Tokens are exact: the client's counts come from the engine's own `usage`, and the engine counts
prompt tokens once per request at its first token and generated tokens as they are produced.
They are compared only when no request failed or was aborted in the window, since a request cut
short leaves tokens on the engine that no usage chunk reports.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.load.records import RequestRecord
from harness.telemetry.prom import Scrape

TTFT = "vllm:time_to_first_token_seconds"
REQUEST_SUCCESS = "vllm:request_success_total"
PROMPT_TOKENS = "vllm:prompt_tokens_total"
GENERATION_TOKENS = "vllm:generation_tokens_total"
# finished_reason values of a request that ran to its end; abort and error cut it short.
COMPLETED_REASONS = ("stop", "length", "repetition")


@dataclass(frozen=True)
class TtftBounds:
    """How far the client's mean TTFT may sit from the engine's exact mean, in ms.

    below_ms: the client's mean may not be lower than the engine's by more than this. In theory
      the limit is 0 (every client TTFT contains its engine TTFT). What is left is clock noise:
      the engine times with time.time(), the client with perf_counter(), on the same host; 1 ms
      is far above what they drift apart over a run of a few minutes.
    above_ms: the most the client, the engine's HTTP server and (through the router) the
      router may add on average; a client that queues or stalls requests exceeds it.
    """

    below_ms: float = 1.0
    above_ms: float = 150.0


def _delta(first: Scrape, last: Scrape, name: str, **labels: str) -> float:
    return last.value(name, 0.0, **labels) - first.value(name, 0.0, **labels)


def _histogram_delta(first: Scrape, last: Scrape, name: str) -> dict[float, float]:
    after, before = last.histogram(name), first.histogram(name)
    return {b: after[b] - before.get(b, 0.0) for b in after}


def reconcile(
    records: Sequence[RequestRecord],
    first: Scrape,
    last: Scrape,
    *,
    bounds: TtftBounds | None = None,
) -> dict[str, Any]:
    """`records`: the requests that reached this engine in the window between the scrapes
    `first` and `last` (through the router: those it routed there). Returns the figures side by
    side and `problems`, one sentence for each one that does not reconcile."""
    bounds = bounds or TtftBounds()
    ok = [r for r in records if r.ok]
    failed = len(records) - len(ok)
    completed = sum(
        _delta(first, last, REQUEST_SUCCESS, finished_reason=reason) for reason in COMPLETED_REASONS
    )
    cut_short = _delta(first, last, REQUEST_SUCCESS) - completed
    out: dict[str, Any] = {
        "client_requests": len(ok),
        "client_failed": failed,
        "engine_requests": completed,
        "engine_cut_short": cut_short,
        "client_prompt_tokens": sum(r.prompt_tokens or 0 for r in ok),
        "engine_prompt_tokens": _delta(first, last, PROMPT_TOKENS),
        "client_output_tokens": sum(r.output_tokens or 0 for r in ok),
        "engine_output_tokens": _delta(first, last, GENERATION_TOKENS),
        "tokens_compared": failed == 0 and cut_short == 0,
        "bounds_ms": {"below": bounds.below_ms, "above": bounds.above_ms},
    }
    problems: list[str] = []
    if completed != len(ok):
        problems.append(
            f"the engine completed {completed:.0f} requests in the window, the client "
            f"{len(ok)} ({failed} failed)"
        )
    if out["tokens_compared"]:
        for kind in ("prompt", "output"):
            c, e = out[f"client_{kind}_tokens"], out[f"engine_{kind}_tokens"]
            if c != e:
                problems.append(f"{kind} tokens: the client counted {c}, the engine {e:.0f}")

    client = [r.ttft_s - (r.classifier_ms or 0.0) / 1000.0 for r in ok if r.ttft_s is not None]
    total, count = _delta(first, last, TTFT + "_sum"), _delta(first, last, TTFT + "_count")
    out["client_ttft_mean_ms"] = statistics.fmean(client) * 1000 if client else None
    out["engine_ttft_mean_ms"] = total / count * 1000 if count else None
    out["engine_ttft_requests"] = count
    out["ttft_mean_diff_ms"] = None
    negative = [t for t in client if t < 0]
    if negative:
        problems.append(
            f"{len(negative)} client TTFTs are negative (lowest {min(negative) * 1000:.1f} ms): "
            "no first token comes before its request; the client's clock starts late, or the "
            "router's X-Classifier-Ms is longer than the whole TTFT"
        )
    if client and count and count == len(client):
        diff = out["client_ttft_mean_ms"] - out["engine_ttft_mean_ms"]
        out["ttft_mean_diff_ms"] = diff
        if diff < -bounds.below_ms:
            problems.append(
                f"client TTFT mean {out['client_ttft_mean_ms']:.1f} ms is {-diff:.1f} ms below "
                f"the engine's exact mean {out['engine_ttft_mean_ms']:.1f} ms (at most "
                f"{bounds.below_ms:g} ms allowed): the client's clock starts late"
            )
        elif diff > bounds.above_ms:
            problems.append(
                f"client TTFT mean {out['client_ttft_mean_ms']:.1f} ms is {diff:.1f} ms above "
                f"the engine's exact mean {out['engine_ttft_mean_ms']:.1f} ms (at most "
                f"{bounds.above_ms:g} ms allowed): the client adds too much"
            )
    elif client and count:
        problems.append(
            f"TTFT not compared: the engine timed {count:.0f} first tokens, the client "
            f"{len(client)}"
        )
    out["ttft_buckets"] = _bucket_check(client, _histogram_delta(first, last, TTFT), problems)
    out["problems"] = problems
    return out


def _bucket_check(
    client: Sequence[float], engine: dict[float, float], problems: list[str]
) -> list[list[float]]:
    """[bound, client count <= bound, engine count <= bound] at every finite bound; a problem
    at the first bound where the client has more (its TTFTs are shorter than the engine's)."""
    rows = []
    xs = sorted(client)
    for bound, engine_le in sorted(engine.items()):
        if math.isinf(bound):
            continue
        client_le = bisect.bisect_right(xs, bound)
        rows.append([bound, float(client_le), engine_le])
    bad = next((row for row in rows if row[1] > row[2]), None)
    if bad is not None:
        problems.append(
            f"{bad[1]:.0f} client TTFTs are <= {bad[0] * 1000:g} ms but only {bad[2]:.0f} of "
            f"the engine's: the client's TTFTs are shorter than the engine's own"
        )
    return rows
