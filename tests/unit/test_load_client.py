"""The load users' HTTP client (harness.load.http): per-read delivery, events and bodies of any
size, connection reuse, error answers and broken streams.

The client runs on gevent sockets, so it runs in a child process (gevent must never reach the
pytest process); the server is a plain threaded one in this process. Nothing here is timed:
per-read delivery is shown by a server that holds its second event back until the client has
acknowledged the first, which a buffering client would never do.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIG_EVENT_CHARS = 1_000_000  # one SSE data line far larger than any read buffer
# About 50k tokens of prompt at ~4 characters per token.
PROMPT_CHARS = 210_000


def sse(obj: object) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def token(text: str) -> dict[str, Any]:
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": text}}],
    }


USAGE = sse({"choices": [], "usage": {"prompt_tokens": 50_000, "completion_tokens": 3}})


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.acked = threading.Event()
        self.connections = 0
        self.bodies: list[int] = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: Server

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1

    def log_message(self, *args: object) -> None:
        pass

    def chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("X-Route", "local")
        self.end_headers()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.bodies.append(len(body))
        if self.path == "/ack":
            self.server.acked.set()
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/lockstep":
            self.start_stream()
            self.chunk(sse(token("first")))
            # The next event exists only once the client has reported the first one.
            self.server.acked.wait(timeout=60)
            self.chunk(sse(token("second")) + USAGE + b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/big":
            self.start_stream()
            event = sse(token("x" * BIG_EVENT_CHARS))
            for i in range(0, len(event), 4096):
                self.chunk(event[i : i + 4096])
            self.chunk(USAGE + b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/broken":
            self.start_stream()
            self.chunk(sse(token("only")))
            self.close_connection = True
        else:
            text = b'{"error":{"message":"no such route","code":404}}'
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


CLIENT = """
import itertools, json, sys
from harness.load.http import StreamClient
from harness.load.sse import measure_stream

base = sys.argv[1]
out = {}
client = StreamClient(base)
prompt = json.dumps({"messages": [{"role": "user", "content": "w " * (%d // 2)}]}).encode()

# Per-read delivery: the first event must come out before the server sends the second.
resp = client.post("/lockstep", prompt, {"X-Harness-Request": "a"})
reads = resp.reads()
first = next(reads)
out["first_read"] = first.decode()
acker = StreamClient(base)
acker.post("/ack", b"{}", {}).close()
timing = measure_stream(itertools.chain([first], reads))
out["lockstep"] = {"gaps": len(timing.gaps_s), "usage": timing.usage, "done": timing.done}
out["route"] = resp.header("x-route")

# One event of a megabyte, across hundreds of reads and chunks, on the same connection.
resp = client.post("/big", prompt, {})
pieces = list(resp.reads())
timing = measure_stream(pieces)
out["big"] = {"reads": len(pieces), "bytes": sum(map(len, pieces)), "first": timing.first_token_at
              is not None, "done": timing.done, "error": timing.error}
out["connections"] = client.connections

resp = client.post("/missing", b"{}", {})
out["missing"] = [resp.status, json.loads(resp.read_all())["error"]["code"]]
out["connections_after_error"] = client.connections

resp = client.post("/broken", b"{}", {})
try:
    list(resp.reads())
    out["broken"] = "no error"
except OSError as e:
    out["broken"] = type(e).__name__
print(json.dumps(out))
"""


def test_client_reads_per_socket_read_and_any_size(server: Server) -> None:
    base = f"http://127.0.0.1:{server.server_address[1]}"
    run = subprocess.run(
        [sys.executable, "-c", CLIENT % PROMPT_CHARS, base],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert '"first"' in out["first_read"] and '"second"' not in out["first_read"]
    assert out["lockstep"] == {
        "gaps": 1,
        "usage": {"prompt_tokens": 50_000, "completion_tokens": 3},
        "done": True,
    }
    assert out["route"] == "local"
    big = out["big"]
    assert big["first"] and big["done"] and big["error"] is None
    assert big["bytes"] > BIG_EVENT_CHARS and big["reads"] > 1
    # Every prompt arrived whole; lockstep, big and the error answer shared one connection.
    assert server.bodies[0] > PROMPT_CHARS and server.bodies.count(server.bodies[0]) == 2
    assert out["connections"] == 1 and out["connections_after_error"] == 1
    assert out["missing"] == [404, 404]
    assert out["broken"] == "ConnectionResetError"


def test_the_locustfiles_come_from_the_harness_not_from_the_compose_files_folder() -> None:
    """An owner's stack may live anywhere (`--compose /opt/ai-stack/docker-compose.yml`): the
    profiles' locustfiles are the harness's own."""
    from harness.load.profiles import PROFILES
    from harness.load.runner import HARNESS_ROOT, locustfile

    for profile in PROFILES:
        path = locustfile(profile)
        assert path.is_file() and path.parent == HARNESS_ROOT / "tests" / "load", path
