"""Measure on a real GPU what `harness check` assumes, with stand-ins for the two engines.

Run on the GPU box (needs torch with CUDA and nvidia-ml-py):

    python scripts/gpu_vram_probe.py [--compose infra/docker-compose.yml]

It prints the card as NVML sees it, `harness check`'s verdict for that card, then starts two
stand-in processes one after the other that reserve each engine's budget fraction of total
memory (as vLLM does), and reports per-process NVML memory: the CUDA context each process adds
beyond its reservation is the figure behind `check.cuda_context`. While both hold their budgets
it runs the live free-memory preflight, which must refuse and name them. Nothing is left running.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.config import load_settings  # noqa: E402
from harness.telemetry.nvml import snapshot  # noqa: E402
from harness.units import MIB  # noqa: E402
from harness.vram.check import run_check  # noqa: E402
from harness.vram.free import free_memory_finding  # noqa: E402
from harness.vram.render import render_text  # noqa: E402

HOLDER = """
import sys, torch
x = torch.empty(int(sys.argv[1]), dtype=torch.uint8, device="cuda")
torch.cuda.synchronize()
print("ready", flush=True)
sys.stdin.read()
"""


def mib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / MIB:,.0f} MiB"


def start_holder(n_bytes: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(n_bytes)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "ready":
        proc.kill()
        raise SystemExit(f"stand-in failed to reserve {mib(n_bytes)}")
    time.sleep(1.0)
    return proc


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--compose", type=Path, default=ROOT / "infra/docker-compose.yml")
    ns = ap.parse_args()

    base = snapshot(0)
    print(
        f"GPU 0: {base.name}; total {mib(base.total_bytes)}, used {mib(base.used_bytes)}, "
        f"free {mib(base.free_bytes)}; processes {len(base.processes)}"
    )
    settings = load_settings(ROOT / "harness.toml")
    result = run_check(ns.compose, settings, nvml_total=base.total_bytes)
    print(render_text(result))
    print("check exit code would be", 0 if result.ok else 1)

    readings = {"gpu": base.name, "total_bytes": base.total_bytes, "idle_used": base.used_bytes}
    holders: list[subprocess.Popen[str]] = []
    try:
        before = base
        for e in result.plan.engines:
            reserve = math.ceil(base.total_bytes * e.utilization)
            p = start_holder(reserve)
            holders.append(p)
            now = snapshot(0)
            mine = next((q.used_bytes for q in now.processes if q.pid == p.pid), None)
            delta = now.used_bytes - before.used_bytes
            ctx = None if mine is None else mine - reserve
            print(
                f"{e.service} stand-in pid {p.pid}: reserved {mib(reserve)}; NVML process "
                f"{mib(mine)}; device used +{mib(delta)}; beyond reservation: "
                f"process {mib(ctx)}, device {mib(delta - reserve)}"
            )
            readings[e.service] = {"reserved": reserve, "process_used": mine, "device_delta": delta}
            before = now
        held = snapshot(0)
        finding = free_memory_finding(result.plan, held)
        print(
            "live preflight while both hold their budgets:",
            finding.message if finding else "PASS (unexpected)",
        )
        readings["preflight_refused"] = finding is not None
        readings["preflight_pass_at_idle"] = free_memory_finding(result.plan, base) is None
    finally:
        for p in reversed(holders):
            if p.stdin:
                p.stdin.close()
            p.wait(timeout=30)
    after = snapshot(0)
    print(
        f"after teardown: used {mib(after.used_bytes)} (idle was {mib(base.used_bytes)}), "
        f"processes {len(after.processes)}"
    )
    print("READINGS " + json.dumps(readings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
