"""Re-measure the twin's latency SLOs and print the limits they justify.

Every latency limit of the twin targets in harness.toml is a p95 measured on a 2-core machine
times a stated margin (at most 3x). This script measures those p95s again and prints the table
to paste, with the date:

    .venv/bin/python benchmarks/slo_calibration.py                   # 3 runs of steady, 20 s
    .venv/bin/python benchmarks/slo_calibration.py --runs 5 --margin 3
    .venv/bin/python benchmarks/slo_calibration.py --from reports/runs/RUN [RUN ...]

Each run is `harness load steady --target twin` (or, with --from, the `steady` summaries of
existing run records, e.g. a `make test` session's and its emulated GPU child's). The proposed
limit is the largest p95 seen times the margin, rounded down to two significant digits (so
the margin is at most the one stated).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROFILE = "steady"
METRICS = (("ttft_s", "p95_ttft_s"), ("itl_s", "p95_itl_s"), ("e2e_s", "p95_e2e_s"))


def round_down(x: float, digits: int = 2) -> float:
    """Two significant digits, rounded down: the limit stays within the stated margin."""
    if x <= 0:
        return 0.0
    scale = 10 ** (digits - 1 - math.floor(math.log10(x)))
    return math.floor(x * scale + 1e-9) / scale


def p95s(record: dict[str, Any]) -> dict[tuple[str, str], float]:
    """(route, slo key) -> p95 seconds, from one record's steady summary."""
    summary = record.get("load", {}).get(PROFILE) or {}
    out: dict[tuple[str, str], float] = {}
    for route, metrics in (summary.get("latency") or {}).items():
        if route == "all":
            continue
        for metric, key in METRICS:
            value = (metrics.get(metric) or {}).get("p95")
            if value is not None:
                out[(route, key)] = float(value)
    return out


def run_once(duration: str) -> dict[str, Any]:
    harness = Path(sys.executable).with_name("harness")
    argv = [str(harness), "load", PROFILE, "--target", "twin", "--duration", duration, "--json"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=900)
    if done.returncode not in (0, 1):  # 1: an SLO breached, which is what is being measured
        sys.exit(f"harness load failed (exit {done.returncode}): {done.stderr[-2000:]}")
    doc = json.loads(done.stdout)
    path = Path(doc.get("run_dir", "")) / "record.json"
    return json.loads(path.read_text()) if path.is_file() else doc


def read_run(run_dir: Path) -> dict[str, Any]:
    """A run's record, or, for a run that ended before writing one, its steady summary."""
    record = run_dir / "record.json"
    if record.is_file():
        return dict(json.loads(record.read_text()))
    stats = run_dir / "load" / PROFILE / "stats.json"
    if stats.is_file():
        return {"load": {PROFILE: json.loads(stats.read_text())}}
    sys.exit(f"{run_dir}: neither record.json nor load/{PROFILE}/stats.json")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", default="20s")
    ap.add_argument("--margin", type=float, default=3.0)
    ap.add_argument("--from", dest="runs_from", nargs="+", type=Path, default=None)
    ns = ap.parse_args(argv)
    if not 1.0 < ns.margin <= 3.0:
        ap.error("--margin must be above 1 and at most 3")
    records = (
        [read_run(d) for d in ns.runs_from]
        if ns.runs_from
        else [run_once(ns.duration) for _ in range(ns.runs)]
    )
    seen: dict[tuple[str, str], list[float]] = {}
    for rec in records:
        for k, v in p95s(rec).items():
            seen.setdefault(k, []).append(v)
    if not seen:
        print("no steady latencies in these runs", file=sys.stderr)
        return 1
    today = time.strftime("%Y-%m-%d")
    print(f"# steady p95s over {len(records)} run(s) on {today}, margin {ns.margin:g}x")
    print(f"{'route':8} {'key':12} {'p95 s (each run)':32} {'max':>7} {'limit':>7}")
    for (route, key), values in sorted(seen.items()):
        top = max(values)
        each = ", ".join(f"{v:.3f}" for v in values)
        print(f"{route:8} {key:12} {each:32} {top:7.3f} {round_down(top * ns.margin):7g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
