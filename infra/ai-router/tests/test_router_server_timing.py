"""Server-Timing: classify, upstream connect, upstream first byte and the router's total, on
chat answers streamed or not, and the same upstream figures on the session log line."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from ai_router.timing import RequestTiming
from flask.testing import FlaskClient
from router_fakes import (
    AUTH,
    PROMPT,
    Upstreams,
    chat_body,
    chat_completion,
    xai_response,
    xai_stream,
)

SSE = {"content-type": "text/event-stream; charset=utf-8"}
ROLE_CHUNK = (
    b'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,'
    b'"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'
)


def parts(header: str) -> dict[str, float]:
    """`classify;dur=1.2, total;dur=3.4` as {"classify": 1.2, "total": 3.4}."""
    out = {}
    for item in header.split(","):
        name, _, params = item.strip().partition(";")
        assert params.startswith("dur="), item
        out[name] = float(params.removeprefix("dur="))
    return out


def session_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def slow(
    connect_s: float, first_byte_s: float, answer: Callable[[], httpx.Response]
) -> Callable[[httpx.Request], httpx.Response]:
    """An upstream that takes `connect_s` before the request head goes out (as httpcore's trace
    tells it) and `first_byte_s` more before it answers."""

    def handle(request: httpx.Request) -> httpx.Response:
        time.sleep(connect_s)
        request.extensions["trace"]("http11.send_request_headers.started", {"request": request})
        time.sleep(first_byte_s)
        return answer()

    return handle


def test_whole_answer_carries_every_part(
    client: FlaskClient, upstreams: Upstreams, session_log_path: Path
) -> None:
    upstreams.primary = slow(0.02, 0.03, lambda: httpx.Response(200, json=chat_completion()))
    resp = client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
    assert resp.status_code == 200
    got = parts(resp.headers["Server-Timing"])
    assert list(got) == ["classify", "upstream_connect", "upstream_ttfb", "total"]
    assert got["upstream_connect"] >= 20
    assert got["upstream_ttfb"] >= 30
    # The parts nest inside the router's total.
    assert got["total"] >= got["classify"] + got["upstream_connect"] + got["upstream_ttfb"] - 0.2
    # X-Classifier-Ms is the same interval in whole milliseconds.
    assert abs(got["classify"] - int(resp.headers["X-Classifier-Ms"])) <= 1.05
    (line,) = session_lines(session_log_path)
    assert line["upstream_connect_ms"] == got["upstream_connect"]
    assert line["upstream_ttfb_ms"] == got["upstream_ttfb"]


def test_stream_head_carries_the_first_byte(client: FlaskClient, upstreams: Upstreams) -> None:
    """The router reads a stream's first chunk before it answers, so the head of a streamed
    answer already knows the upstream's first byte; the wait for that chunk counts."""

    def chunks() -> Iterator[bytes]:
        time.sleep(0.04)
        yield ROLE_CHUNK
        yield b"data: [DONE]\n\n"

    upstreams.primary = lambda r: httpx.Response(200, headers=SSE, content=chunks())
    resp = client.post(
        "/v1/chat/completions", json=chat_body(stream=True), headers=AUTH, buffered=False
    )
    got = parts(resp.headers["Server-Timing"])
    assert got["upstream_ttfb"] >= 40
    assert got["total"] >= got["upstream_ttfb"]
    assert resp.get_data() == ROLE_CHUNK + b"data: [DONE]\n\n"


def test_stream_session_line_has_the_header_figures(
    client: FlaskClient, upstreams: Upstreams, session_log_path: Path
) -> None:
    upstreams.primary = slow(
        0.01, 0.02, lambda: httpx.Response(200, headers=SSE, content=ROLE_CHUNK)
    )
    resp = client.post("/v1/chat/completions", json=chat_body(stream=True), headers=AUTH)
    got = parts(resp.headers["Server-Timing"])
    # Reading .data drives the stream to its end; the line is written when it finishes.
    assert resp.data
    (line,) = session_lines(session_log_path)
    assert line["upstream_connect_ms"] == got["upstream_connect"] >= 10
    assert line["upstream_ttfb_ms"] == got["upstream_ttfb"] >= 20
    assert PROMPT not in resp.headers["Server-Timing"]


@pytest.mark.parametrize("stream", [False, True])
def test_search_retry_adds_both_attempts(
    client: FlaskClient, upstreams: Upstreams, stream: bool
) -> None:
    upstreams.label = "search"
    empty = xai_response(None, status="incomplete", reason="max_output_tokens")
    answers = iter([empty, xai_response("Second try.")])

    def answer() -> httpx.Response:
        a = next(answers)
        if not stream:
            return httpx.Response(200, json=a)
        text = [] if a is empty else ["Second try."]
        terminal = "response.incomplete" if a is empty else "response.completed"
        return httpx.Response(200, headers=SSE, content=b"".join(xai_stream(text, a, terminal)))

    upstreams.xai = slow(0.0, 0.03, answer)
    resp = client.post("/v1/chat/completions", json=chat_body(stream=stream), headers=AUTH)
    assert resp.status_code == 200
    assert resp.headers["X-Upstream-Retry"] == "empty_output"
    assert parts(resp.headers["Server-Timing"])["upstream_ttfb"] >= 60


def test_upstream_error_still_timed(client: FlaskClient, upstreams: Upstreams) -> None:
    upstreams.primary = lambda r: httpx.Response(500, json={"error": {"message": "boom"}})
    resp = client.post("/v1/chat/completions", json=chat_body(stream=True), headers=AUTH)
    assert resp.status_code == 502
    assert set(parts(resp.headers["Server-Timing"])) == {
        "classify",
        "upstream_connect",
        "upstream_ttfb",
        "total",
    }


def test_unreachable_upstream_has_no_first_byte(client: FlaskClient, upstreams: Upstreams) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    upstreams.primary = refuse
    resp = client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
    assert resp.status_code == 502
    assert set(parts(resp.headers["Server-Timing"])) == {"classify", "total"}


def test_route_only_times_classification(client: FlaskClient) -> None:
    resp = client.post("/v1/route", json=chat_body(), headers=AUTH)
    assert set(parts(resp.headers["Server-Timing"])) == {"classify", "total"}


def test_no_header_without_a_decision(client: FlaskClient) -> None:
    assert "Server-Timing" not in client.get("/v1/models", headers=AUTH).headers
    unauthorised = client.post("/v1/chat/completions", json=chat_body())
    assert unauthorised.status_code == 401
    assert "Server-Timing" not in unauthorised.headers


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_last_head_sent_ends_connecting() -> None:
    """A kept-alive connection found closed is replaced and the head sent again: connecting
    lasts until the head that carried the request."""
    clock = Clock()
    t = RequestTiming(clock)
    trace = t.upstream_extensions()["trace"]
    t.asking()
    clock.now += 0.001
    trace("http11.send_request_headers.started", {})
    clock.now += 0.004
    trace("connection.connect_tcp.started", {})
    trace("http11.send_request_headers.started", {})
    clock.now += 0.050
    t.first_byte()
    assert t.header() == "upstream_connect;dur=5.0, upstream_ttfb;dur=50.0"
    assert (t.ms("upstream_connect"), t.ms("upstream_ttfb"), t.ms("classify")) == (5.0, 50.0, None)


def test_first_byte_without_an_attempt_counts_nothing() -> None:
    t = RequestTiming(Clock())
    t.first_byte()
    assert t.durations == {}
    assert t.header() == ""


def test_httpx_reports_the_head_going_out() -> None:
    """Over a real socket, httpx's transport calls the trace with the event that ends
    connecting; the in-process fakes above only imitate it."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    events: list[str] = []
    t = RequestTiming()
    trace = t.upstream_extensions()["trace"]

    def recording(event: str, info: dict[str, object]) -> None:
        events.append(event)
        trace(event, info)

    try:
        with httpx.Client() as http:
            url = f"http://127.0.0.1:{server.server_address[1]}/"
            request = http.build_request("POST", url, json={}, extensions={"trace": recording})
            t.asking()
            http.send(request)
            t.first_byte()
    finally:
        server.shutdown()
        server.server_close()
    assert any(e.endswith(".send_request_headers.started") for e in events)
    assert "connection.connect_tcp.started" in events
    assert set(t.durations) == {"upstream_connect", "upstream_ttfb"}
