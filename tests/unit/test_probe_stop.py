"""A capacity probe ends when the harness asks: tests/load/locustfile_capacity.py against the
no-op streaming server, with the stop file written part-way through the arrivals. locust lets a
stopping user finish its task, so an arrival already handed out (its user asleep until its due
time) must not go out once the stop file exists."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

from harness.load.arrivals import LEAD_S, STOP_FILE, pool_size
from harness.load.processes import run_locust
from harness.load.records import read_records
from harness.load.settings import LoadSettings

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "tests" / "load" / "locustfile_capacity.py"
RATE, DURATION = 20.0, 8.0


def probe_settings(records: Path) -> LoadSettings:
    base = LoadSettings(
        records=records, api_key="", classifier_url="", classifier_model="",
        max_model_len=32768, max_num_seqs=3, max_tokens=4, context_fraction=0.0,
        chars_per_token=3.0, users=pool_size(RATE, DURATION), duration_s=DURATION, pace_s=0.0,
        seed=1,
    )  # fmt: skip
    return replace(base, rate_per_s=RATE, request_cut_s=5.0, profile="steady")


def test_no_arrival_goes_out_after_the_stop_file(noop_server: str, tmp_path: Path) -> None:
    settings = probe_settings(tmp_path / "requests.jsonl")
    stopped_at: list[float] = []
    done = threading.Event()

    def stop_after_some_requests() -> None:
        while not done.wait(0.05):
            if settings.records.exists() and len(settings.records.read_text().splitlines()) >= 20:
                stopped_at.append(time.time())
                (tmp_path / STOP_FILE).write_text("over-saturated (test)\n")
                return

    watcher = threading.Thread(target=stop_after_some_requests, daemon=True)
    watcher.start()
    try:
        run_locust(LOCUSTFILE, noop_server, settings, tmp_path, cwd=ROOT, timeout_s=120)
    finally:
        done.set()
        watcher.join(timeout=5)
    records = read_records(settings.records)
    assert stopped_at, f"the probe never sent 20 requests ({len(records)} recorded)"
    starts = sorted(r.intended_start for r in records)
    after = [s - stopped_at[0] for s in starts if s > stopped_at[0] + 0.25]
    assert not after, f"{len(after)} arrivals went out after the stop, up to {max(after):.1f} s"
    # The whole schedule would have sent about RATE x DURATION; the stop cut it short.
    assert len(records) < 0.8 * RATE * DURATION, len(records)
    assert starts[-1] - starts[0] < DURATION + LEAD_S
