"""Is a latency percentile of one run really higher than another's? Two tests on per-request
data, standard library only (the GPU box installs no numpy):

- `percentile_growth_bound`: the bootstrap's one-sided lower confidence bound of
  p_q(current) - p_q(baseline). The percentile is numpy's linear one. A bootstrap resample of n
  sorted values takes x[ceil(n U_i)] for n uniforms U_i, and the map is monotone, so the
  resample's k-th smallest value is x[ceil(n U_(k))] with U_(k) ~ Beta(k, n + 1 - k), and the
  next one follows from U_(k) and a Beta(1, n - k) draw. Each resample's percentile therefore
  costs two Beta draws, not a sort: exact, and fast enough for 10,000 resamples of any run.
- `mann_whitney_greater`: the one-sided Mann-Whitney U test (normal approximation with tie
  correction) that current values tend to exceed baseline ones. Used where requests, not the
  values, are the independent units (inter-token gaps come in runs of one request each).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from harness.load.records import RequestRecord

# Fewer requests than this on either side and a percentile is not judged from per-request data.
MIN_REQUESTS = 20


def _linear(xs: Sequence[float], q: float) -> tuple[int, float]:
    """(0-based lower index, fraction) of numpy's linear percentile at q in [0, 1]."""
    pos = (len(xs) - 1) * q
    lo = int(pos)
    return lo, pos - lo


def percentile_draws(
    values: Sequence[float], q: float, draws: int, rng: random.Random
) -> list[float]:
    """`draws` bootstrap replicates of the linear q-percentile (q in [0, 1]) of `values`."""
    xs = sorted(values)
    n = len(xs)
    lo, frac = _linear(xs, q)
    k = lo + 1  # 1-based rank of the lower order statistic
    out = []
    for _ in range(draws):
        u = rng.betavariate(k, n + 1 - k)
        a = xs[min(n - 1, math.ceil(n * u) - 1)] if u > 0 else xs[0]
        if frac == 0.0 or k >= n:
            out.append(a)
            continue
        u2 = u + (1.0 - u) * rng.betavariate(1, n - k)
        b = xs[min(n - 1, max(0, math.ceil(n * u2) - 1))]
        out.append(a + frac * (b - a))
    return out


def percentile_growth_bound(
    baseline: Sequence[float],
    current: Sequence[float],
    q: float = 0.95,
    *,
    confidence: float = 0.95,
    draws: int = 10_000,
    seed: int = 0,
) -> float:
    """The one-sided lower `confidence` bound of p_q(current) - p_q(baseline)."""
    rng = random.Random(seed)
    diffs = sorted(
        c - b
        for b, c in zip(
            percentile_draws(baseline, q, draws, rng),
            percentile_draws(current, q, draws, rng),
            strict=True,
        )
    )
    return diffs[int((1.0 - confidence) * draws)]


def mann_whitney_greater(baseline: Sequence[float], current: Sequence[float]) -> float:
    """One-sided p-value that `current` is stochastically greater than `baseline`."""
    n1, n2 = len(baseline), len(current)
    pooled = sorted([(v, 0) for v in baseline] + [(v, 1) for v in current])
    ranks = [0.0] * len(pooled)
    ties = 0.0
    i = 0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        for m in range(i, j + 1):
            ranks[m] = (i + j) / 2 + 1
        t = j - i + 1
        ties += t**3 - t
        i = j + 1
    r2 = sum(r for r, (_, side) in zip(ranks, pooled, strict=True) if side == 1)
    u2 = r2 - n2 * (n2 + 1) / 2
    n = n1 + n2
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if var <= 0:
        return 1.0
    z = (u2 - n1 * n2 / 2 - 0.5) / math.sqrt(var)  # continuity correction
    return 0.5 * math.erfc(z / math.sqrt(2))


def p95_regression(
    metric: str,
    base: Sequence[RequestRecord],
    cur: Sequence[RequestRecord],
    b: float,
    c: float,
    allowed: float,
) -> tuple[bool, str]:
    """(regressed, why) for a p95 `metric` (ttft_s or itl_s) that went from `b` to `c` with
    `allowed` growth, judged on the successful requests of both runs.

    TTFT: requests are independent, so the bootstrap's 95% lower bound of the p95 growth must
    exceed the allowance: growth within the run-to-run noise of a few dozen requests is not a
    regression. ITL: gaps come in runs of one request, so the unit is the request: the p95 must
    have grown past the allowance and the requests' mean ITL must be higher than the baseline's
    (one-sided Mann-Whitney, p < 0.05).
    """
    n = f"n={len(base)}/{len(cur)} requests"
    if metric == "ttft_s":
        bound = percentile_growth_bound(
            [r.ttft_s for r in base if r.ttft_s is not None],
            [r.ttft_s for r in cur if r.ttft_s is not None],
        )
        return bound > allowed, (
            f"bootstrap: p95 grew by at least {bound * 1000:+.0f} ms (95%), allowed "
            f"+{allowed * 1000:.0f} ms; {n}"
        )
    means_b = [sum(r.itl_s) / len(r.itl_s) for r in base if r.itl_s]
    means_c = [sum(r.itl_s) / len(r.itl_s) for r in cur if r.itl_s]
    p = mann_whitney_greater(means_b, means_c) if means_b and means_c else 1.0
    grew = c > b + allowed + 1e-12
    return grew and p < 0.05, f"Mann-Whitney on per-request mean ITL: p={p:.3g}; {n}"
