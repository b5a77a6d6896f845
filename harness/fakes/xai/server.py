"""A fake xAI Responses API server for the CPU twin.

Stands in for ``https://api.x.ai/v1`` so tests can check what the router sends (every model
request is recorded, with the API key dropped) and how it copes with faults: error statuses,
latency, requests that never answer and length-truncated answers with no text.
Standard library only. ``FakeXAI`` is the programmatic API; ``main`` is the CLI::

    python -m harness.fakes.xai --host 127.0.0.1 --port 0 [--record PATH] [--latency S]
        [--status CODE] [--mode MODE] [--stream-delay S]

Endpoints:

* ``POST /v1/responses``: the model endpoint (needs ``Authorization: Bearer ...``)
* ``GET /health``: ``{"status": "ok"}``
* ``GET /_requests``: the recorded model requests; ``DELETE /_requests`` clears them
* ``GET /_faults``: the fault knobs in effect; ``POST /_faults`` replaces them (see ``Faults``)
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from harness.fakes.xai.responses import (  # noqa: F401  (re-exported for callers and tests)
    DEFAULT_MAX_OUTPUT_TOKENS,
    ECHO_CHARS,
    Json,
    Usage,
    answer_text,
    build_response,
    count_tokens,
    input_tokens,
    is_int,
    stream_events,
)
from harness.fakes.xai.state import (
    MODES,
    TIMEOUT_MAX_S,
    Faults,
    RecordedRequest,
    _error_code,
    _State,
)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: _State) -> None:
        self.state = state
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # clients that hang up are fine
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read results from the control endpoints."""

    def do_GET(self) -> None:
        path = self.path.partition("?")[0]
        if path == "/health":
            self._send_json(200, {"status": "ok"})
        elif path == "/_requests":
            self._send_json(200, self.server.state.recorded())
        elif path == "/_faults":
            self._send_json(200, self.server.state.faults().to_json())
        else:
            self._send_error(404, "not_found", f"no route for GET {path}")

    def do_DELETE(self) -> None:
        if self.path.partition("?")[0] == "/_requests":
            self._send_json(200, {"cleared": self.server.state.clear()})
        else:
            self._send_error(404, "not_found", f"no route for DELETE {self.path}")

    def do_POST(self) -> None:
        path = self.path.partition("?")[0]
        raw = self._read_body()
        if raw is None:
            return
        try:
            body, bad_json = json.loads(raw), False
        except ValueError:
            body, bad_json = None, True
        if path == "/v1/responses":
            self._responses(body, bad_json)
        elif path == "/_faults":
            try:
                faults = Faults.from_json(body)
            except (TypeError, ValueError) as exc:
                self._send_error(400, "invalid_faults", str(exc))
            else:
                self.server.state.set_faults(faults)
                self._send_json(200, faults.to_json())
        else:
            self._send_error(404, "not_found", f"no route for POST {path}")

    def _responses(self, body: Any, bad_json: bool) -> None:
        state = self.server.state
        auth = self.headers.get("Authorization", "")
        headers = {k.lower(): v for k, v in self.headers.items() if k.lower() != "authorization"}
        state.record(RecordedRequest("POST", self.path, headers, bool(auth), body))
        if not re.fullmatch(r"bearer\s+\S.*", auth, re.IGNORECASE):
            self._send_error(401, "invalid_api_key", "missing or malformed Bearer API key")
            return
        if bad_json or not isinstance(body, dict):
            self._send_error(400, "invalid_json", "the request body must be a JSON object")
            return
        if not isinstance(body.get("input"), str | list):
            self._send_error(400, "invalid_input", "'input' must be a string or a list")
            return
        faults = state.take_faults()
        if faults.mode == "timeout":
            state.stopping.wait(TIMEOUT_MAX_S)
            self.close_connection = True  # hang up without an answer
            return
        if state.stopping.wait(faults.latency_s):
            self.close_connection = True
            return
        if faults.mode == "status" and faults.status is not None:
            status = faults.status
            retry = {"Retry-After": "1"} if status in (429, 503) else {}
            error = f"fake-xai injected fault: HTTP {status}"
            self._send_json(status, {"code": _error_code(status), "error": error}, retry)
            return
        response = build_response(body, faults.mode)
        if body.get("stream") is True:
            self._stream(response)
        else:
            self._send_json(200, response)

    def _stream(self, response: Json) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        state = self.server.state
        for number, event in enumerate(stream_events(response)):
            is_delta = event["type"] == "response.output_text.delta"
            if is_delta and state.stream_delay_s and state.stopping.wait(state.stream_delay_s):
                self.close_connection = True
                return
            data = json.dumps(event | {"sequence_number": number})
            self._write_chunk(f"event: {event['type']}\ndata: {data}\n\n".encode())
        self._write_chunk(b"")  # the last chunk

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _read_body(self) -> bytes | None:
        """The request body, or None after answering a body this server cannot read."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._send_error(411, "length_required", "send a Content-Length body")
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._send_error(400, "invalid_request", "bad Content-Length")
            return None
        return self.rfile.read(length)

    def _send_error(self, status: int, code: str, message: str) -> None:
        error = {"message": message, "type": "invalid_request_error", "code": code}
        self._send_json(status, {"error": error})

    def _send_json(
        self, status: int, payload: object, headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)


class FakeXAI:
    """The fake server in a daemon thread; a context manager that starts and stops it."""

    def __init__(
        self,
        *,
        faults: Faults | None = None,
        record_path: str | Path | None = None,
        stream_delay_s: float = 0.0,
    ) -> None:
        path = Path(record_path) if record_path is not None else None
        self._state = _State(faults or Faults(), path, stream_delay_s)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._host = "127.0.0.1"

    def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve on ``host:port`` (0: a free port the OS picks); returns the bound port."""
        if self._server is not None:
            raise RuntimeError("fake-xai is already running")
        self._state.stopping.clear()
        self._server = _Server((host, port), self._state)
        self._host = host
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-xai",
            daemon=True,
        )
        self._thread.start()
        return self.port

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("fake-xai is not running")
        return self._server.server_port

    @property
    def url(self) -> str:
        """The server root, for the control endpoints: ``http://HOST:PORT``."""
        return f"http://{self._host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What a client uses as the xAI base URL: ``http://HOST:PORT/v1``."""
        return f"{self.url}/v1"

    def requests(self) -> list[Json]:
        """The recorded model requests, oldest first, as ``GET /_requests`` returns them."""
        return self._state.recorded()

    def clear_requests(self) -> None:
        self._state.clear()

    def faults(self) -> Faults:
        return self._state.faults()

    def set_faults(
        self,
        faults: Faults | None = None,
        *,
        status: int | None = None,
        latency_s: float = 0.0,
        mode: str | None = None,
        count: int | None = None,
    ) -> Faults:
        """Replace the fault knobs, given as ``faults`` or as keywords (see ``Faults.of``)."""
        if faults is None:
            faults = Faults.of(status, latency_s, mode, count)
        self._state.set_faults(faults)
        return faults

    def stop(self) -> None:
        """Stop serving; wakes handlers that sleep on latency or timeout. Idempotent."""
        self._state.stopping.set()
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> FakeXAI:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.fakes.xai", description="A fake xAI Responses API server."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one")
    parser.add_argument("--record", type=Path, help="append each model request to this JSONL")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before answering")
    parser.add_argument("--status", type=int, help="answer every model request with this status")
    parser.add_argument("--mode", choices=MODES, help="fault mode (default: ok, or status)")
    parser.add_argument("--stream-delay", type=float, default=0.0, help="seconds between deltas")
    args = parser.parse_args(argv)
    try:
        faults = Faults.of(status=args.status, latency_s=args.latency, mode=args.mode)
    except ValueError as exc:
        parser.error(str(exc))

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    fake = FakeXAI(faults=faults, record_path=args.record, stream_delay_s=args.stream_delay)
    port = fake.start(args.host, args.port)
    print(f"fake-xai listening on http://{args.host}:{port}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
