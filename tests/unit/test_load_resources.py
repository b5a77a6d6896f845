"""Process memory and open files from /proc, and the soak bounds that judge their growth."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from harness.config import Settings
from harness.load.resources import ResourceWatch, descendants, group_pids, usage
from harness.load.slo import check_slos


def test_usage_of_this_process_and_a_child_group() -> None:
    me = usage([os.getpid()])
    assert me.processes == 1 and me.rss_bytes > 10 * 2**20 and me.fds >= 3
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True
    )
    try:
        assert child.pid in descendants(os.getpid())
        assert group_pids(child.pid) == [child.pid]
        assert usage([child.pid]).processes == 1
    finally:
        child.kill()
        child.wait()
    assert usage([child.pid]).processes == 0  # gone: skipped, not an error


def wait_for_samples(watch: ResourceWatch, count: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(watch.samples) < count:
        assert time.monotonic() < deadline, f"the watch took no sample {count} in {timeout_s} s"
        time.sleep(0.01)


def test_watch_sees_descriptors_leak() -> None:
    leaked = []
    watch = ResourceWatch({"me": lambda: [os.getpid()]}, interval_s=0.05)
    with watch:
        wait_for_samples(watch, 1)
        leaked += [open(os.devnull) for _ in range(20)]  # noqa: SIM115
        # The watch's own thread must take a sample after the leak: waited for, not slept on,
        # so that a busy machine only makes the test slower.
        wait_for_samples(watch, len(watch.samples) + 1)
    try:
        summary = watch.summary(warmup_s=0.0)["me"]
        assert summary["fd_growth"] >= 20, summary
        assert summary["rss_peak_mib"] >= summary["rss_start_mib"] > 0
    finally:
        for f in leaked:
            f.close()


def soak_summary(rss_growth: float, fd_growth: int) -> dict:
    resources = {
        "router": {
            "rss_start_mib": 100.0, "rss_end_mib": 100.0 + rss_growth,
            "rss_growth_mib": rss_growth, "rss_peak_mib": 100.0 + rss_growth,
            "fds_start": 40, "fds_end": 40 + fd_growth, "fd_growth": fd_growth,
            "processes_end": 3, "from_s": 60.0, "to_s": 600.0,
        }
    }  # fmt: skip
    return {"profile": "soak", "error_rate": 0.0, "failed": 0, "requests": 100, "errors": [],
            "engines": {}, "latency": {}, "resources": resources,
            "routing": {"labelled": 100, "correct": 100, "accuracy": 1.0, "confusion": {},
                        "per_route": {}, "by_in_flight": {}}}  # fmt: skip


def test_soak_bounds_flag_memory_and_descriptor_growth() -> None:
    settings = Settings(path=None, environ={}, data={
        "slo": {"soak": {"max_error_rate": 0.01, "max_rss_growth_mib": 64, "max_fd_growth": 16}}
    })  # fmt: skip
    assert check_slos(settings, soak_summary(10.0, 2), "vllm-primary") == []
    bad = check_slos(settings, soak_summary(80.0, 30), "vllm-primary")
    assert len(bad) == 2
    assert "router memory grew 80.0 MiB" in bad[0] and "allowed 64 MiB" in bad[0]
    assert "router open files grew by 30" in bad[1]
