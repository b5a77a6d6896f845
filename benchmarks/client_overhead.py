"""How much the harness's load client adds, and how fast one load process can go.

    python benchmarks/client_overhead.py [--seconds 8] [--users 1,4,16,64] [--twin]

1. Client overhead against a no-op streaming server (benchmarks/noop_stream_server.py): each
   request carries an id, the server records its own TTFT for it, and the overhead is the
   client's TTFT minus the server's, per request. Printed as median and p95 in ms.
2. The highest request rate one locust process sustains against that server, at each user count.
3. With --twin: the client's TTFT straight to the running twin's primary engine (`harness up`
   first) against the engine's own TTFT histogram over the same window.
Figures are printed, never asserted: the machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.load.records import read_records  # noqa: E402
from harness.load.runner import run_locust  # noqa: E402
from harness.load.settings import LoadSettings  # noqa: E402
from harness.load.stats import percentile, throughput  # noqa: E402
from harness.stack.ports import free_port  # noqa: E402

LOCUSTFILE = ROOT / "benchmarks" / "locustfile_direct.py"


def settings(out: Path, url: str, model: str) -> LoadSettings:
    return LoadSettings(
        records=out / "requests.jsonl",
        api_key="",
        classifier_url="",
        classifier_model="",
        max_model_len=32768,
        max_num_seqs=3,
        max_tokens=16,
        context_fraction=0.0,
        chars_per_token=3.0,
        users=None,
        duration_s=None,
        pace_s=0.0,
        seed=1,
        direct_url=url,
        direct_model=model,
    )


def drive(url: str, model: str, users: int, seconds: float, work: Path) -> Path:
    out = work / f"u{users}-{time.monotonic_ns()}"
    out.mkdir()
    run_locust(
        LOCUSTFILE,
        url,
        settings(out, url, model),
        out,
        cwd=ROOT,
        timeout_s=seconds + 120,
        users=users,
        run_time_s=seconds,
    )
    return out / "requests.jsonl"


def noop_benchmark(seconds: float, user_counts: list[int], work: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks/noop_stream_server.py"), str(port)],
        stdout=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(50):
            try:
                httpx.get(url + "/stats", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        records = read_records(drive(url, "noop", 1, seconds, work))
        server_ttft = httpx.get(url + "/stats", timeout=5).json()
        overhead = [
            (r.ttft_s - server_ttft[r.request_id]) * 1000
            for r in records
            if r.ok and r.ttft_s is not None and r.request_id in server_ttft
        ]
        print(
            f"client overhead vs no-op server, 1 user, {len(overhead)} requests: "
            f"median {percentile(overhead, 50):.2f} ms, p95 {percentile(overhead, 95):.2f} ms"
        )
        print("users  requests  errors  req/s   client TTFT p50 (ms)")
        best = 0.0
        for users in user_counts:
            recs = read_records(drive(url, "noop", users, seconds, work))
            ok = [r for r in recs if r.ok]
            rate = throughput(recs)["requests_per_s"] or 0.0
            ttft = percentile([r.ttft_s * 1000 for r in ok if r.ttft_s is not None], 50) or 0.0
            print(f"{users:5d}  {len(recs):8d}  {len(recs) - len(ok):6d}  {rate:6.1f}  {ttft:8.2f}")
            if len(ok) == len(recs):
                best = max(best, rate)
        print(f"highest rate sustained without errors by one load process: {best:.1f} req/s")
    finally:
        server.terminate()
        server.wait(timeout=10)


def twin_benchmark(seconds: float, work: Path) -> None:
    from harness.stack import state
    from harness.telemetry.sampler import Sampler

    doc = state.load()
    if doc is None:
        print("--twin: no stack recorded as up; run `harness up --target twin` first")
        return
    primary = next(s for s in doc["services"] if s["role"] == "primary")
    with Sampler({"primary": primary["url"]}) as sampler:
        records = read_records(drive(primary["url"], primary["model"], 1, seconds, work))
    ttft = [r.ttft_s for r in records if r.ok and r.ttft_s is not None]
    total, count = sampler.counter_window("primary", "vllm:time_to_first_token_seconds")
    from harness.telemetry.prom import histogram_quantile

    server_p50 = histogram_quantile(
        0.5, sampler.histogram_window("primary", "vllm:time_to_first_token_seconds")
    )
    client_p50 = percentile(ttft, 50)
    print(f"twin primary, 1 user, {len(ttft)} requests (engine counted {count:.0f}):")
    if count and ttft:
        client_mean, engine_mean = sum(ttft) / len(ttft), total / count
        print(
            f"  client TTFT mean {client_mean * 1000:.2f} ms vs engine mean "
            f"{engine_mean * 1000:.2f} ms: overhead {(client_mean - engine_mean) * 1000:.2f} ms"
        )
    if client_p50 is not None and server_p50 is not None:
        print(
            f"  client TTFT median {client_p50 * 1000:.2f} ms vs engine histogram median "
            f"{server_p50 * 1000:.2f} ms (interpolated in buckets): overhead "
            f"{(client_p50 - server_p50) * 1000:.2f} ms"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--users", default="1,4,16,64")
    ap.add_argument("--twin", action="store_true")
    ns = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="harness-bench-") as tmp:
        noop_benchmark(ns.seconds, [int(u) for u in ns.users.split(",")], Path(tmp))
        if ns.twin:
            twin_benchmark(ns.seconds * 2, Path(tmp))
    print(json.dumps({"done": True}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
