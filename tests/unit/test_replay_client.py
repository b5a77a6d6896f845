"""The replay's locust user against a local server (locust in a child process, as a run starts
it): every request of the plan goes out once, at its due time and not before, with the messages
its plan index builds, and its line in the sent log names the router's request id. The run ends
when the last answer is in, not at the shape's overrun."""

from __future__ import annotations

import json
import resource
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from harness.load.processes import run_locust
from harness.load.prompts import chat_prompts, filler_sentences
from harness.load.records import read_records
from harness.load.replay import (
    LEAD_S,
    PLAN,
    ROUTES,
    SENT_LOG,
    LoggedRequest,
    build_plan,
    filler_text,
    messages_for,
    write_plan,
)
from harness.load.settings import LoadSettings
from harness.report.replay import read_sent

ROOT = Path(__file__).resolve().parents[2]
ANSWER_S = 0.4  # each answer's length: several requests are in flight at once


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    bodies: ClassVar[list[dict[str, Any]]] = []

    def log_message(self, *args: object) -> None:
        pass

    def chunk(self, obj: object) -> None:
        data = b"data: " + json.dumps(obj).encode() + b"\n\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).bodies.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("X-Route", "local")
        self.send_header("X-Request-Id", str(uuid.uuid4()))
        self.end_headers()
        self.chunk({"choices": [{"delta": {"content": "hi"}}]})
        time.sleep(ANSWER_S)
        self.chunk({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}})
        data = b"data: [DONE]\n\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n")
        self.wfile.flush()


@pytest.fixture
def server() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_each_planned_request_goes_out_once_at_its_due_time(server: str, tmp_path: Path) -> None:
    # Six requests 0.8 s apart, then six 0.2 s apart two seconds later, at speed 2: the users
    # of the first six are idle (and must not spin) while the burst is due.
    offsets = [i * 0.8 for i in range(6)] + [8.0 + i * 0.2 for i in range(6)]
    logged = [
        LoggedRequest(i, at, "local", f"c{i}", 1, 1, 200 + 10 * i, None, 40, 2, 400, 200)
        for i, at in enumerate(offsets)
    ]
    questions = {route: chat_prompts(route) for route in ROUTES}
    plan = build_plan(logged, questions, speed=2.0, chars_per_token=3.0)
    out = tmp_path / "replay"
    write_plan(plan, out / PLAN)
    settings = LoadSettings(
        records=out / "requests.jsonl", api_key="", classifier_url="", classifier_model="",
        max_model_len=32768, max_num_seqs=3, max_tokens=64, context_fraction=0.65,
        chars_per_token=3.0, users=plan.users, duration_s=plan.duration_s + LEAD_S,
        pace_s=0.0, seed=1,
    )  # fmt: skip
    Handler.bodies = []
    started, cpu = time.monotonic(), _children_cpu_s()
    run_locust(
        ROOT / "tests" / "load" / "locustfile_replay.py", server, settings, out,
        cwd=ROOT, timeout_s=120,
    )  # fmt: skip
    took, cpu = time.monotonic() - started, _children_cpu_s() - cpu
    records = read_records(settings.records)
    sent = read_sent(out / SENT_LOG)
    assert len(records) == 12 and all(r.ok for r in records), [r.error for r in records]
    assert sorted(int(s["index"]) for s in sent.values()) == list(range(12))
    assert all(s["router_id"] for s in sent.values())
    by_index = {int(sent[r.request_id or ""]["index"]): r for r in records}
    t0 = by_index[0].intended_start
    for i, r in by_index.items():
        assert r.intended_start - t0 == pytest.approx(plan.requests[i].due_s, abs=1e-3)
        assert r.dispatch_delay_s is not None and r.dispatch_delay_s >= 0  # never early
    delays = sorted(r.dispatch_delay_s or 0.0 for r in records)
    assert delays[len(delays) // 2] < 0.05, delays
    # What the server got is what the plan builds, answer budget and all.
    filler = filler_text(filler_sentences())
    want = sorted(json.dumps(messages_for(q, questions, filler)) for q in plan.requests)
    assert sorted(json.dumps(b["messages"]) for b in Handler.bodies) == want
    assert {b["max_tokens"] for b in Handler.bodies} == {2} and all(
        b["ignore_eos"] for b in Handler.bodies
    )
    # Ends with the last answer (locust's start and stop included), far below the overrun.
    assert took < plan.duration_s + LEAD_S + 30
    # An idle user sleeps: a user that polls for work it will never get burns the CPU that the
    # others need to send on time (0.8 s of CPU in a 7.8 s run; 4.2 s when idle users polled).
    assert cpu < 0.2 * took, f"the load process used {cpu:.2f} s of CPU in {took:.2f} s"


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
