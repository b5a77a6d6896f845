"""A stand-in service for bring-up tests: sleeps, then serves GET /health with 200.

    python stub_service.py PORT DELAY_S EVENTS_FILE NAME [EXIT_CODE]

With EXIT_CODE it prints a line and exits during "startup" instead. Every event is appended to
EVENTS_FILE as JSON with a wall-clock time, so a test can check what started when.
"""

from __future__ import annotations

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

port, delay, events, name = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]


def event(kind: str) -> None:
    with open(events, "a") as fh:
        fh.write(json.dumps({"name": name, "event": kind, "t": time.time()}) + "\n")


event("start")
print(f"{name}: loading (token=should-not-leak)", flush=True)
time.sleep(delay)
if len(sys.argv) > 5:
    print(f"{name}: fatal error during startup", flush=True)
    sys.exit(int(sys.argv[5]))


class Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


server = HTTPServer(("127.0.0.1", port), Health)
event("listening")
print(
    f"{name}: CPU KV cache size: 49,152 tokens, Maximum concurrency for 32,768 tokens per "
    "request: 1.50x",
    flush=True,
)
server.serve_forever()
