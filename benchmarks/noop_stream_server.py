"""A no-op OpenAI-style streaming server for measuring the load client itself.

    python benchmarks/noop_stream_server.py PORT [CHUNKS]

POST /v1/chat/completions streams CHUNKS token chunks, a usage chunk and [DONE] as fast as it
can. For each request it records the server-side TTFT (request fully read -> first token chunk
written and flushed) under the client's X-Harness-Request id; GET /stats returns them.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])
CHUNKS = int(sys.argv[2]) if len(sys.argv) > 2 else 16
STATS: dict[str, float] = {}
LOCK = threading.Lock()


def event(obj: object) -> bytes:
    data = b"data: " + json.dumps(obj).encode() + b"\n\n"
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Without it the first chunk waits behind the headers for a delayed ACK (about 40 ms).
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        with LOCK:
            body = json.dumps(STATS).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        received = time.perf_counter()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}}]}
        for i in range(CHUNKS):
            chunk["choices"][0]["delta"] = {"content": f"t{i} "}
            self.wfile.write(event(chunk))
            self.wfile.flush()
            if i == 0:
                with LOCK:
                    STATS[self.headers.get("X-Harness-Request", "")] = (
                        time.perf_counter() - received
                    )
        self.wfile.write(
            event(
                {
                    "object": "chat.completion.chunk",
                    "choices": [],
                    "usage": {"prompt_tokens": 3, "completion_tokens": CHUNKS},
                }
            )
        )
        self.wfile.write(b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")
        self.wfile.flush()

    def log_message(self, *args: object) -> None:
        pass


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer.request_queue_size = 256
print(f"noop server on 127.0.0.1:{PORT}", flush=True)
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
