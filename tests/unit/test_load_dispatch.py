"""The dispatch delay: how late the load client sent each request against its own schedule.
The users record it (a real user against a local server, in a child process: gevent must never
reach pytest), the summary gives its p50, p95 and max, and a run whose client fell behind is
invalid and fails its SLO check with a sentence that blames the client, not the stack."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import pytest

from harness.config import Settings, load_settings
from harness.load.records import RequestRecord, read_records
from harness.load.runner import DEFAULT_MAX_DISPATCH_DELAY_P95_S, summarize
from harness.load.slo import check_slos
from harness.load.stats import dispatch_summary
from harness.report.record import RunRecord
from harness.report.schema import load_record
from harness.telemetry.sampler import Sampler

ROOT = Path(__file__).resolve().parents[2]
PRIMARY = "vllm-primary"
# How long the child keeps its user busy before its second request: the delay that request
# must show.
LATE_S = 0.3


def sse(obj: object) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        token = {"object": "chat.completion.chunk", "choices": [{"delta": {"content": "hi"}}]}
        usage = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}
        for data in (sse(token), sse(usage), b"data: [DONE]\n\n"):
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


@pytest.fixture
def server() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


# A user sends on time, then is kept busy LATE_S past the end of its answer (as a client whose
# other users hold the gevent hub would be), then sends twice more as locust would: after its
# wait_time. With a pace, the child sleeps out wait_time itself, as locust's wait does.
CHILD = textwrap.dedent(
    """
    import sys, time
    from locust.env import Environment
    from harness.load import users

    late = float(sys.argv[1])
    user = users.DirectUser(Environment(user_classes=[users.DirectUser]))
    user.on_start()
    user.send()
    time.sleep(user.wait_time() + late)
    user.send()
    for _ in range(2):
        time.sleep(user.wait_time())
        user.send()
    users.writer().close()
    """
)


def run_user(tmp_path: Path, url: str, pace_s: float) -> list[RequestRecord]:
    records = tmp_path / "requests.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARNESS_")}
    env.update(
        HARNESS_LOAD_RECORDS=str(records),
        HARNESS_LOAD_DIRECT_URL=url,
        HARNESS_LOAD_DIRECT_MODEL="m",
        HARNESS_LOAD_PACE_S=str(pace_s),
    )
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(LATE_S)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    found = read_records(records)
    assert [r.ok for r in found] == [True] * 4, [r.error for r in found]
    return found


def test_a_closed_loop_user_records_how_late_it_sent_after_its_previous_answer(
    server: str, tmp_path: Path
) -> None:
    first, late, *on_time = run_user(tmp_path, server, pace_s=0.0)
    for r in (first, late, *on_time):
        assert r.dispatch_delay_s == round(r.actual_start - r.intended_start, 6)
    # Due when the user started, and when its previous answer ended (think time 0): the busy
    # spell shows on the request it held back, and only there.
    assert first.dispatch_delay_s is not None and 0 <= first.dispatch_delay_s < 0.05
    assert late.dispatch_delay_s is not None and LATE_S <= late.dispatch_delay_s < LATE_S + 0.1
    assert late.intended_start >= first.actual_start + (first.e2e_s or 0)
    for r in on_time:
        assert r.dispatch_delay_s is not None and 0 <= r.dispatch_delay_s < 0.05


def test_a_paced_user_is_due_at_its_slots_whatever_the_answers_took(
    server: str, tmp_path: Path
) -> None:
    pace = 0.5
    found = run_user(tmp_path, server, pace_s=pace)
    gaps = [b.intended_start - a.intended_start for a, b in itertools.pairwise(found)]
    assert gaps == pytest.approx([pace] * 3, abs=1e-6)
    # The busy spell makes the second slot's request late; the third keeps its own slot.
    first, late, *on_time = (r.dispatch_delay_s or 0.0 for r in found)
    assert 0 <= first < 0.05 and LATE_S <= late < LATE_S + 0.1
    assert all(0 <= d < 0.05 for d in on_time)


def records(delays_ms: list[float]) -> list[RequestRecord]:
    """Answered chats, one a second, each sent `delays_ms` late."""
    out = []
    for i, ms in enumerate(delays_ms):
        rec = RequestRecord("ChatUser", "router", float(i), i + ms / 1000, 200, True, "local")
        rec.reason, rec.expected_route = "classified", "local"
        rec.ttft_s, rec.e2e_s, rec.output_tokens = 0.2, 0.5, 8
        rec.dispatch_delay_s = ms / 1000
        out.append(rec)
    return out


def run_summary(delays_ms: list[float], **kw: Any) -> dict[str, Any]:
    sampler = Sampler({PRIMARY: "http://unused"}, nvml=False)
    return summarize("steady", records(delays_ms), sampler, 3, PRIMARY, **kw)


def test_the_summary_gives_p50_p95_and_max_of_the_dispatch_delay() -> None:
    s = run_summary([float(ms) for ms in range(100)])  # 0 .. 99 ms
    d = s["dispatch_delay_s"]
    assert d["p50"] == pytest.approx(0.0495)
    assert d["p95"] == pytest.approx(0.09405)
    assert d["max"] == pytest.approx(0.099)
    assert d["n"] == 100
    # Records written before the field existed give it from their two start times.
    old = records([3.0, 7.0])
    for r in old:
        r.dispatch_delay_s = None
    assert dispatch_summary(old)["max"] == pytest.approx(0.007)
    assert dispatch_summary([])["p95"] is None


def late_run() -> dict[str, Any]:
    """A client on time for 90 requests and 0.4 s late for 10: p95 well above the limit."""
    return run_summary([2.0] * 90 + [400.0] * 10)


def test_a_client_that_fell_behind_makes_the_run_invalid(tmp_path: Path) -> None:
    ok = run_summary([2.0] * 100)
    assert ok["valid"] is True and ok["invalid_reason"] is None
    assert ok["max_dispatch_delay_p95_s"] == DEFAULT_MAX_DISPATCH_DELAY_P95_S
    bad = late_run()
    assert bad["valid"] is False
    assert "the load client, not the stack, fell behind" in bad["invalid_reason"]
    # Both validate against the record's schema.
    rec = RunRecord(tmp_path, "twin")
    rec.put("load", "steady", ok)
    rec.put("load", "saturate", {**bad, "profile": "saturate"})
    rec.finish("failed")
    doc = load_record(rec.path)
    assert doc["load"]["saturate"]["dispatch_delay_s"]["max"] == pytest.approx(0.4)


def test_the_slo_check_fails_a_late_client_and_says_what_to_do() -> None:
    cfg = Settings(path=None, data={"slo": {}}, environ={}, overrides={})
    assert check_slos(cfg, run_summary([2.0] * 100), PRIMARY) == []
    (found,) = check_slos(cfg, late_run(), PRIMARY)
    assert found.startswith("steady: the load client, not the stack, fell behind its own schedule")
    assert "p95 dispatch delay 0.400 s (max 0.400 s, 100 requests)" in found
    assert "> max_dispatch_delay_p95_s 0.05 ([load] in harness.toml)" in found
    assert "fewer users (harness load --users N)" in found
    assert "--processes N here, --workers N on other machines" in found


def test_the_limit_comes_from_the_settings_the_check_is_given() -> None:
    # 30 ms late at p95: within the shipped limit, beyond one set at 20 ms in the environment.
    s = run_summary([30.0] * 100)
    assert s["valid"] is True
    shipped = load_settings(ROOT / "harness.toml")
    assert shipped.typed.load.max_dispatch_delay_p95_s == DEFAULT_MAX_DISPATCH_DELAY_P95_S
    assert not [v for v in check_slos(shipped, s, PRIMARY) if "dispatch" in v]
    env = {"HARNESS_LOAD_MAX_DISPATCH_DELAY_P95_S": "0.02"}
    strict = Settings(path=None, data={"slo": {}}, environ=env, overrides={})
    (found,) = check_slos(strict, s, PRIMARY)
    assert "p95 dispatch delay 0.030 s" in found and "max_dispatch_delay_p95_s 0.02" in found
    # A summary from before dispatch delays were recorded is not judged on them.
    old = {k: v for k, v in late_run().items() if k != "dispatch_delay_s"}
    assert check_slos(strict, old, PRIMARY) == []
