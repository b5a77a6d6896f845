"""The fake xAI Responses API server (harness/fakes/xai)."""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.fakes.xai.server import FakeXAI, Faults

ROOT = Path(__file__).resolve().parents[2]
KEY = "xai-test-secret-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
BODY: dict[str, Any] = {
    "model": "grok-4-fast",
    "input": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What happened in the news today about the Mars rover?"},
    ],
    "tools": [{"type": "web_search"}],
    "max_output_tokens": 256,
}


@pytest.fixture
def fake() -> Iterator[FakeXAI]:
    with FakeXAI() as server:
        yield server


@pytest.fixture
def client(fake: FakeXAI) -> Iterator[httpx.Client]:
    # Plain HTTP on loopback: verify=False only skips loading the CA bundle (~50 ms a client).
    with httpx.Client(base_url=fake.url, headers=AUTH, timeout=5, verify=False) as http:
        yield http


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def output_text(response: dict[str, Any]) -> str:
    return "".join(
        part["text"]
        for item in response["output"]
        if item["type"] == "message"
        for part in item["content"]
        if part["type"] == "output_text"
    )


def test_start_binds_a_free_local_port(fake: FakeXAI) -> None:
    assert fake.port > 0
    assert fake.base_url == f"http://127.0.0.1:{fake.port}/v1"
    assert httpx.get(f"{fake.url}/health").json() == {"status": "ok"}


def test_non_stream_reply_shape_and_usage(client: httpx.Client) -> None:
    reply = client.post("/v1/responses", json=BODY)
    assert reply.status_code == 200
    data = reply.json()
    assert data["id"].startswith("resp_") and len(data["id"]) > 10
    assert data["object"] == "response"
    assert isinstance(data["created_at"], int)
    assert (data["model"], data["status"]) == ("grok-4-fast", "completed")
    search, message = data["output"]
    assert search["type"] == "web_search_call" and search["status"] == "completed"
    assert message["type"] == "message" and message["role"] == "assistant"
    (part,) = message["content"]
    assert part["type"] == "output_text" and part["annotations"] == []
    text = part["text"]
    assert "fake" in text.lower() and "search" in text.lower()
    assert "What happened in the news today about t" in text  # the last input's first 40 chars
    assert client.post("/v1/responses", json=BODY).json()["output"][1]["content"] == [part]

    usage = data["usage"]
    visible = len(text.split())
    reasoning = usage["output_tokens_details"]["reasoning_tokens"]
    assert usage["input_tokens"] == 12  # words of both input messages
    assert usage["input_tokens_details"] == {"cached_tokens": 0}
    assert reasoning > 0
    assert usage["output_tokens"] == visible + reasoning
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_string_input_and_content_parts_are_echoed(client: httpx.Client) -> None:
    data = client.post("/v1/responses", json={"model": "m", "input": "hi there"}).json()
    assert output_text(data).endswith("hi there")
    assert data["usage"]["input_tokens"] == 2
    parts = [{"role": "user", "content": [{"type": "input_text", "text": "price of gold"}]}]
    data = client.post("/v1/responses", json={"model": "m", "input": parts}).json()
    assert output_text(data).endswith("price of gold")


def test_stream_events_end_with_the_completed_response(client: httpx.Client) -> None:
    reply = client.post("/v1/responses", json=BODY | {"stream": True})
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    events = sse_events(reply.text)
    names = [name for name, _ in events]
    assert all(data["type"] == name for name, data in events)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert names[0] == "response.created"
    assert events[0][1]["response"]["status"] == "in_progress"
    assert "response.output_item.added" in names
    assert "response.content_part.added" in names
    assert names[-2:] == ["response.output_item.done", "response.completed"]

    final = events[-1][1]["response"]
    assert final["status"] == "completed" and final["object"] == "response"
    assert final["usage"]["output_tokens_details"]["reasoning_tokens"] > 0
    message = final["output"][1]
    deltas = [data for name, data in events if name == "response.output_text.delta"]
    assert len(deltas) >= 3
    assert {(d["item_id"], d["output_index"], d["content_index"]) for d in deltas} == {
        (message["id"], 1, 0)
    }
    (done,) = [data for name, data in events if name == "response.output_text.done"]
    assert "".join(d["delta"] for d in deltas) == done["text"] == output_text(final)


def test_the_openai_sdk_reads_replies_and_streams(fake: FakeXAI) -> None:
    import openai  # a core dependency: never a skip

    sdk = openai.OpenAI(base_url=fake.base_url, api_key=KEY, max_retries=0)
    reply = sdk.responses.create(model="grok-4-fast", input="weather in Oslo?")
    assert reply.output_text == "Fake xAI search answer for: weather in Oslo?"
    with sdk.responses.stream(model="grok-4-fast", input="weather in Oslo?") as stream:
        for _ in stream:
            pass
        assert stream.get_final_response().output_text == reply.output_text
    fake.set_faults(mode="empty_length")
    reply = sdk.responses.create(model="grok-4-fast", input="x", max_output_tokens=50)
    assert (reply.status, reply.output_text, reply.usage.output_tokens) == ("incomplete", "", 50)


def test_stream_delay_spaces_out_the_deltas() -> None:
    with FakeXAI(stream_delay_s=0.02) as fake:
        started = time.monotonic()
        reply = httpx.post(f"{fake.base_url}/responses", json=BODY | {"stream": True}, headers=AUTH)
        elapsed = time.monotonic() - started
    deltas = [e for e in sse_events(reply.text) if e[0] == "response.output_text.delta"]
    assert elapsed >= 0.02 * len(deltas) * 0.9


def test_requests_are_recorded_without_the_key_and_cleared(
    fake: FakeXAI, client: httpx.Client
) -> None:
    client.post("/v1/responses", json=BODY, headers={"X-Trace": "abc"})
    (record,) = client.get("/_requests").json()
    assert record == fake.requests()[0]
    assert (record["method"], record["path"]) == ("POST", "/v1/responses")
    assert record["body"] == BODY
    assert record["authorization_present"] is True
    assert record["headers"]["x-trace"] == "abc"
    assert "authorization" not in record["headers"]
    assert KEY not in json.dumps(record)
    assert client.delete("/_requests").json() == {"cleared": 1}
    assert client.get("/_requests").json() == [] == fake.requests()


def test_record_file_gets_json_lines_without_the_key(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    with FakeXAI(record_path=path) as fake:
        for _ in range(2):
            httpx.post(f"{fake.base_url}/responses", json=BODY, headers=AUTH)
    lines = path.read_text().splitlines()
    assert [json.loads(line)["body"] for line in lines] == [BODY, BODY]
    assert KEY not in path.read_text()


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic abc"}, {"Authorization": ""}])
def test_missing_bearer_key_is_401(fake: FakeXAI, headers: dict[str, str]) -> None:
    reply = httpx.post(f"{fake.base_url}/responses", json=BODY, headers=headers)
    assert reply.status_code == 401
    assert isinstance(reply.json()["error"], dict)
    assert fake.requests()[0]["authorization_present"] is bool(headers.get("Authorization"))


@pytest.mark.parametrize("content", [b"{not json", b"", b"[1, 2]", b'{"model": "m"}'])
def test_bad_json_is_400(fake: FakeXAI, client: httpx.Client, content: bytes) -> None:
    reply = client.post("/v1/responses", content=content)
    assert reply.status_code == 400
    assert "error" in reply.json()
    assert len(fake.requests()) == 1


def test_unknown_route_is_404(client: httpx.Client) -> None:
    assert client.get("/v1/models").status_code == 404


@pytest.mark.parametrize(("status", "retry_after"), [(429, "1"), (500, None)])
def test_status_fault(client: httpx.Client, status: int, retry_after: str | None) -> None:
    knobs = client.post("/_faults", json={"status": status, "mode": "status"})
    assert knobs.json() == {"status": status, "latency_s": 0.0, "mode": "status", "count": None}
    assert client.get("/_faults").json() == knobs.json()
    for _ in range(2):  # until changed
        reply = client.post("/v1/responses", json=BODY)
        assert reply.status_code == status
        assert reply.headers.get("retry-after") == retry_after
        error = reply.json()
        assert isinstance(error["code"], str) and error["code"]
        assert isinstance(error["error"], str) and error["error"]
    client.post("/_faults", json={})
    assert client.post("/v1/responses", json=BODY).status_code == 200


def test_count_limited_faults_revert(client: httpx.Client) -> None:
    assert client.post("/_faults", json={"status": 503, "count": 2}).status_code == 200
    assert client.get("/_faults").json()["count"] == 2
    assert client.post("/v1/responses", json=BODY).status_code == 503
    assert client.get("/_faults").json()["count"] == 1
    assert client.post("/v1/responses", json=BODY).status_code == 503
    assert client.get("/_faults").json() == Faults().to_json()
    assert client.post("/v1/responses", json=BODY).status_code == 200


def test_limited_fault_falls_back_to_start_time_faults() -> None:
    with FakeXAI(faults=Faults.of(status=500)) as fake, httpx.Client(headers=AUTH) as http:
        fake.set_faults(mode="empty_length", count=1)
        assert http.post(f"{fake.base_url}/responses", json=BODY).json()["status"] == "incomplete"
        assert http.post(f"{fake.base_url}/responses", json=BODY).status_code == 500


@pytest.mark.parametrize(
    "knobs",
    [
        {"mode": "status"},
        {"status": 200},
        {"mode": "later"},
        {"count": 0},
        {"latency_s": -1},
        {"status": 500, "mode": "ok"},
        {"colour": "red"},
        [1],
    ],
)
def test_invalid_faults_are_400(client: httpx.Client, knobs: object) -> None:
    assert client.post("/_faults", json=knobs).status_code == 400
    assert client.get("/_faults").json() == Faults().to_json()


def test_latency(fake: FakeXAI, client: httpx.Client) -> None:
    fake.set_faults(latency_s=0.3)
    started = time.monotonic()
    reply = client.post("/v1/responses", json=BODY)
    assert reply.status_code == 200
    assert time.monotonic() - started >= 0.3


def test_empty_length_reply(fake: FakeXAI, client: httpx.Client) -> None:
    fake.set_faults(mode="empty_length")
    data = client.post("/v1/responses", json=BODY).json()
    assert data["status"] == "incomplete"
    assert data["incomplete_details"] == {"reason": "max_output_tokens"}
    assert "reasoning" in [item["type"] for item in data["output"]]
    assert output_text(data) == ""
    assert all(item.get("content", []) == [] for item in data["output"])
    usage = data["usage"]
    assert usage["output_tokens"] == usage["output_tokens_details"]["reasoning_tokens"] == 256


def test_empty_length_stream_ends_incomplete(fake: FakeXAI, client: httpx.Client) -> None:
    fake.set_faults(mode="empty_length")
    events = sse_events(client.post("/v1/responses", json=BODY | {"stream": True}).text)
    names = [name for name, _ in events]
    assert names[0] == "response.created"
    assert names[-1] == "response.incomplete"
    assert "response.output_text.delta" not in names
    assert "response.completed" not in names
    final = events[-1][1]["response"]
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["usage"]["output_tokens"] == 256


def test_timeout_mode_never_answers_and_does_not_block_stop(fake: FakeXAI) -> None:
    fake.set_faults(mode="timeout")
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{fake.base_url}/responses", json=BODY, headers=AUTH, timeout=0.5)
    # Bounds far below the fake's 120 s hold, loose enough for a loaded shared machine.
    assert time.monotonic() - started < 30
    assert len(fake.requests()) == 1
    stopping = time.monotonic()
    fake.stop()
    assert time.monotonic() - stopping < 30


def read_line(stream: Any, timeout: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, "no output from the CLI in time"
    return str(stream.readline())


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_and_exits_cleanly_on_signal(tmp_path: Path, signum: int) -> None:
    record = tmp_path / "cli.jsonl"
    command = [sys.executable, "-m", "harness.fakes.xai", "--host", "127.0.0.1"]
    command += ["--port", "0", "--record", str(record), "--latency", "0"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = read_line(proc.stdout, timeout=20).strip()
        assert line.startswith("fake-xai listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        assert int(url.rsplit(":", 1)[1]) > 0
        assert httpx.get(f"{url}/health").json() == {"status": "ok"}
        assert httpx.post(f"{url}/v1/responses", json=BODY, headers=AUTH).status_code == 200
        proc.send_signal(signum)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert json.loads(record.read_text())["authorization_present"] is True


def test_cli_status_flag_injects_the_fault() -> None:
    command = [sys.executable, "-m", "harness.fakes.xai", "--port", "0", "--status", "429"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        url = read_line(proc.stdout, timeout=20).strip().rsplit(" ", 1)[1]
        reply = httpx.post(f"{url}/v1/responses", json=BODY, headers=AUTH)
        assert (reply.status_code, reply.headers["retry-after"]) == (429, "1")
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
