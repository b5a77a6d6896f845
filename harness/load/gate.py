"""The regression gate: a load run's per-request latencies against a baseline kept in the
repository, with the noise-aware test `harness compare` uses.

`make test` runs steady on the twin; tests/load/test_profiles.py then holds its TTFT and
end-to-end p95s and its end-to-end median, per route, to tests/load/baselines/<target>/
steady.jsonl: a
percentile regresses when the bootstrap's 95% lower bound of its growth exceeds the allowance,
the larger of `[compare] gate_p95_growth` of the baseline's value and `[compare]
gate_slack_s`.

The allowance is wider than `harness compare`'s 15 %: the baseline was measured on another day,
and this machine's speed varies from day to day by more than that. It still fails a router
that spends 0.6 s more on every request (the twin's median end-to-end time is 0.1-0.4 s).

Refresh the baseline after an intended change (or a new machine), from a green run's steady:

    .venv/bin/python -m harness.load.gate write reports/runs/RUN/load/steady/requests.jsonl \
        tests/load/baselines/twin/steady.jsonl

The baseline keeps what the gate reads (route, status, TTFT, E2E), rounded: about 24 kB.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from harness.load.records import RequestRecord, read_records
from harness.load.significance import MIN_REQUESTS, percentile_growth_bound
from harness.load.stats import percentile

METRICS = ("ttft_s", "e2e_s")
# What is judged: the p95s, and the end-to-end median. A few dozen requests' p95 moves with the
# engines' contention, while a delay every request pays (a slower router) moves the median at
# once; closed-loop users send fewer requests when each takes longer, so the engines' share of
# a slowdown can even fall. Not the TTFT median: with max-num-seqs users a local request either
# starts at once or waits behind another's prefill, and the median flips between the two
# (0.125 s and 0.248 s in two clean runs on the twin), where the end-to-end median holds.
JUDGED = (("ttft_s", 95), ("e2e_s", 50), ("e2e_s", 95))
_KEEP = ("user", "target", "intended_start", "actual_start", "status", "ok", "route", *METRICS)


def write_baseline(requests: Path, dest: Path) -> int:
    """The gate's fields of a run's requests.jsonl, rounded, to `dest`; how many records."""
    lines = []
    for rec in read_records(requests):
        doc = {k: getattr(rec, k) for k in _KEEP}
        doc["intended_start"] = doc["actual_start"] = 0.0  # when it ran is not compared
        for k in METRICS:
            if doc[k] is not None:
                doc[k] = round(float(doc[k]), 4)
        lines.append(json.dumps(doc, separators=(",", ":")))
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text("\n".join(lines) + "\n")
    return len(lines)


def gate(
    base: Sequence[RequestRecord],
    cur: Sequence[RequestRecord],
    *,
    growth: float,
    slack_s: float,
    where: str,
) -> tuple[list[str], list[str]]:
    """(regressions, lines): each p95 of each route in both runs, judged; `where` names the
    baseline in the messages."""
    bad: list[str] = []
    lines: list[str] = []
    routes = sorted({r.route for r in base if r.ok and r.route})
    for route in routes:
        b_recs = [r for r in base if r.ok and r.route == route]
        c_recs = [r for r in cur if r.ok and r.route == route]
        for metric, q in JUDGED:
            b_vals = [float(v) for r in b_recs if (v := getattr(r, metric)) is not None]
            c_vals = [float(v) for r in c_recs if (v := getattr(r, metric)) is not None]
            name = f"{route} p{q} {metric.removesuffix('_s')}"
            if min(len(b_vals), len(c_vals)) < MIN_REQUESTS:
                lines.append(f"{name}: not judged, n={len(b_vals)}/{len(c_vals)} < {MIN_REQUESTS}")
                continue
            b, c = percentile(b_vals, q), percentile(c_vals, q)
            assert b is not None and c is not None
            allowed = max(b * growth, slack_s)
            bound = percentile_growth_bound(b_vals, c_vals, q / 100)
            verdict = "REGRESSION" if bound > allowed else "ok"
            line = (
                f"{name}: {c:.3f} s against {b:.3f} s in {where}; grew by at least "
                f"{bound * 1000:+.0f} ms (bootstrap, 95%), allowed +{allowed * 1000:.0f} ms: "
                f"{verdict} (n={len(b_vals)}/{len(c_vals)})"
            )
            lines.append(line)
            if bound > allowed:
                bad.append(line)
    return bad, lines


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] != "write":
        print("usage: python -m harness.load.gate write REQUESTS_JSONL BASELINE", file=sys.stderr)
        return 2
    n = write_baseline(Path(args[1]), Path(args[2]))
    print(f"wrote {n} records to {args[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
