"""locust's distributed mode from the runner: a master and two workers against the no-op
streaming server; every request the server answered is in the merged requests.jsonl, once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness.load.records import merge_worker_records, read_records, worker_records
from harness.load.runner import run_locust
from harness.load.settings import LoadSettings
from harness.stack.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def noop_server() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "noop_stream_server.py"), str(port), "4"],
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(url + "/stats", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_two_workers_records_are_merged_once_each(noop_server: str, tmp_path: Path) -> None:
    settings = LoadSettings(
        records=tmp_path / "requests.jsonl", api_key="", classifier_url="",
        classifier_model="", max_model_len=32768, max_num_seqs=3, max_tokens=4,
        context_fraction=0.0, chars_per_token=3.0, users=None, duration_s=None, pace_s=0.0,
        seed=1, direct_url=noop_server, direct_model="noop",
    )  # fmt: skip
    run_locust(
        ROOT / "benchmarks" / "locustfile_direct.py",
        noop_server,
        settings,
        tmp_path,
        cwd=ROOT,
        timeout_s=180,
        users=4,
        run_time_s=4,
        processes=2,
    )
    records = read_records(settings.records)
    answered = httpx.get(noop_server + "/stats", timeout=30).json()
    ids = [r.request_id for r in records]
    assert records and all(r.ok for r in records), {r.error for r in records}
    assert len(set(ids)) == len(ids), "a record was merged twice"
    # Every request the server answered was recorded by one of the workers.
    assert set(answered) == set(ids)
    assert not list(tmp_path.glob("requests-*.jsonl")), "worker files left after the merge"
    # Both workers ran users: locust spreads 4 users over 2 workers.
    logs = sorted(tmp_path.glob("locust-worker-*.out"))
    assert len(logs) == 2
    stats = json.loads((tmp_path / "locust.json").read_text())
    assert sum(e["num_requests"] for e in stats) == len(records)


def test_merge_orders_by_start_and_keeps_existing_lines(tmp_path: Path) -> None:
    main = tmp_path / "requests.jsonl"
    main.write_text(json.dumps({"actual_start": 0.5}) + "\n")
    worker_records(main, "1").write_text(
        json.dumps({"actual_start": 3.0}) + "\n" + json.dumps({"actual_start": 1.0}) + "\n"
    )
    worker_records(main, "2").write_text(json.dumps({"actual_start": 2.0}) + "\n")
    merged = merge_worker_records(main)
    assert [p.name for p in merged] == ["requests-1.jsonl", "requests-2.jsonl"]
    starts = [json.loads(ln)["actual_start"] for ln in main.read_text().splitlines()]
    assert starts == [0.5, 1.0, 2.0, 3.0]
