"""How much the harness's load client adds, how fast one load process can go, and what each
request costs it in CPU.

    python benchmarks/client_overhead.py [--seconds 8] [--users 1,4,16,64] [--clients ...] [--twin]

Every figure is printed for each client named in --clients, side by side in one run:
`requests` is the client the load users had before (requests under gevent,
benchmarks/locustfile_direct_requests.py), `gevent` the one they use now (harness.load.http on
gevent sockets, benchmarks/locustfile_direct.py).
1. Client overhead against a no-op streaming server (benchmarks/noop_stream_server.py): each
   request carries an id, the server records its own TTFT for it, and the overhead is the
   client's TTFT minus the server's, per request. Printed as median and p95 in ms.
2. The highest request rate one locust process sustains against that server, at each user
   count, and the locust process's CPU time (user + system) per request.
3. With --twin: the client's TTFT straight to the running twin's primary engine (`harness up`
   first) against the engine's own TTFT histogram over the same window.
Figures are printed, never asserted: the machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.load.processes import run_locust  # noqa: E402
from harness.load.records import read_records  # noqa: E402
from harness.load.settings import LoadSettings  # noqa: E402
from harness.load.stats import percentile, throughput  # noqa: E402
from harness.stack.ports import free_port  # noqa: E402

CLIENTS = {
    "requests": ROOT / "benchmarks" / "locustfile_direct_requests.py",
    "gevent": ROOT / "benchmarks" / "locustfile_direct.py",
}
LOCUSTFILE = CLIENTS["gevent"]


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


@dataclass(frozen=True)
class Drive:
    records: Path
    cpu_s: float  # the locust process's user + system time


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def drive(
    url: str, model: str, users: int, seconds: float, work: Path, lf: Path = LOCUSTFILE
) -> Drive:
    out = work / f"u{users}-{time.monotonic_ns()}"
    out.mkdir()
    # Only locust is waited for in between, so the children's CPU delta is locust's own.
    before = _children_cpu()
    run_locust(
        lf,
        url,
        settings(out, url, model),
        out,
        cwd=ROOT,
        timeout_s=seconds + 120,
        users=users,
        run_time_s=seconds,
    )
    cpu = _children_cpu() - before
    # The test's own CPU time where the locustfile recorded it (benchmarks/locust_cpu.py).
    if (out / "cpu.json").is_file():
        cpu = float(json.loads((out / "cpu.json").read_text())["cpu_s"])
    return Drive(out / "requests.jsonl", cpu)


@dataclass
class ClientFigures:
    overhead_p50_ms: float = 0.0
    overhead_p95_ms: float = 0.0
    best_rate: float = 0.0
    best_users: int = 0
    cpu_ms_per_request: float = 0.0  # at the best rate


def _wait_for(url: str) -> None:
    for _ in range(100):
        try:
            httpx.get(url + "/stats", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)


def measure_client(
    name: str, url: str, seconds: float, user_counts: list[int], work: Path
) -> ClientFigures:
    lf = CLIENTS[name]
    fig = ClientFigures()
    d = drive(url, "noop", 1, seconds, work, lf)
    records = read_records(d.records)
    server_ttft = httpx.get(url + "/stats", timeout=30).json()
    overhead = [
        (r.ttft_s - server_ttft[r.request_id]) * 1000
        for r in records
        if r.ok and r.ttft_s is not None and r.request_id in server_ttft
    ]
    fig.overhead_p50_ms = percentile(overhead, 50) or 0.0
    fig.overhead_p95_ms = percentile(overhead, 95) or 0.0
    print(
        f"[{name}] client overhead vs no-op server, 1 user, {len(overhead)} requests: "
        f"median {fig.overhead_p50_ms:.2f} ms, p95 {fig.overhead_p95_ms:.2f} ms"
    )
    print(f"[{name}] users  requests  errors   req/s  CPU ms/req  client TTFT p50 (ms)")
    for users in user_counts:
        d = drive(url, "noop", users, seconds, work, lf)
        recs = read_records(d.records)
        ok = [r for r in recs if r.ok]
        rate = throughput(recs)["requests_per_s"] or 0.0
        cpu = d.cpu_s / len(recs) * 1000 if recs else 0.0
        ttft = percentile([r.ttft_s * 1000 for r in ok if r.ttft_s is not None], 50) or 0.0
        print(
            f"[{name}] {users:5d}  {len(recs):8d}  {len(recs) - len(ok):6d}  {rate:6.1f}  "
            f"{cpu:10.3f}  {ttft:8.2f}"
        )
        if len(ok) == len(recs) and rate > fig.best_rate:
            fig.best_rate, fig.best_users, fig.cpu_ms_per_request = rate, users, cpu
    print(
        f"[{name}] highest rate without errors from one load process: {fig.best_rate:.1f} "
        f"req/s at {fig.best_users} users, {fig.cpu_ms_per_request:.3f} CPU ms per request"
    )
    return fig


def noop_benchmark(
    seconds: float, user_counts: list[int], work: Path, clients: list[str]
) -> dict[str, ClientFigures]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks/noop_stream_server.py"), str(port)],
        stdout=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(url)
        figures = {name: measure_client(name, url, seconds, user_counts, work) for name in clients}
    finally:
        server.terminate()
        server.wait(timeout=10)
    print("client     overhead p50   p95 (ms)   best req/s (users)   CPU ms/request")
    for name, f in figures.items():
        print(
            f"{name:9}  {f.overhead_p50_ms:12.2f}  {f.overhead_p95_ms:8.2f}   "
            f"{f.best_rate:10.1f} ({f.best_users:3d})   {f.cpu_ms_per_request:14.3f}"
        )
    return figures


def twin_benchmark(seconds: float, work: Path) -> None:
    from harness.load.stats import TTFT, histogram_bucket
    from harness.stack import state
    from harness.telemetry.sampler import Sampler

    doc = state.load()
    if doc is None:
        print("--twin: no stack recorded as up; run `harness up --target twin` first")
        return
    primary = next(s for s in doc["services"] if s["role"] == "primary")
    with Sampler({"primary": primary["url"]}) as sampler:
        d = drive(primary["url"], primary["model"], 1, seconds, work)
    records = read_records(d.records)
    ttft = [r.ttft_s for r in records if r.ok and r.ttft_s is not None]
    total, count = sampler.counter_window("primary", TTFT)
    print(f"twin primary, 1 user, {len(ttft)} requests (engine counted {count:.0f}):")
    if count and ttft:
        client_mean, engine_mean = sum(ttft) / len(ttft), total / count
        print(
            f"  client TTFT mean {client_mean * 1000:.2f} ms vs engine mean (exact, _sum/_count) "
            f"{engine_mean * 1000:.2f} ms: overhead {(client_mean - engine_mean) * 1000:.2f} ms"
        )
    bucket = histogram_bucket(0.5, sampler.histogram_window("primary", TTFT))
    client_p50 = percentile(ttft, 50)
    if client_p50 is not None and bucket is not None:
        # A histogram only bounds its median to one bucket: no difference is taken from it.
        print(
            f"  client TTFT median {client_p50 * 1000:.2f} ms; engine median bucket-bounded in "
            f"({bucket[0] * 1000:g}, {bucket[1] * 1000:g}] ms"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--users", default="1,4,16,64")
    ap.add_argument("--clients", default="requests,gevent", help="of: " + ", ".join(CLIENTS))
    ap.add_argument("--twin", action="store_true")
    ns = ap.parse_args()
    clients = [c for c in ns.clients.split(",") if c]
    unknown = set(clients) - set(CLIENTS)
    if unknown:
        ap.error(f"unknown client(s) {sorted(unknown)}; known: {', '.join(CLIENTS)}")
    with tempfile.TemporaryDirectory(prefix="harness-bench-") as tmp:
        figures = noop_benchmark(
            ns.seconds, [int(u) for u in ns.users.split(",")], Path(tmp), clients
        )
        if ns.twin:
            twin_benchmark(ns.seconds * 2, Path(tmp))
    print(json.dumps({name: vars(f) for name, f in figures.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
