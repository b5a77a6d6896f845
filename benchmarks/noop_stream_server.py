"""A no-op OpenAI-style streaming server for measuring the load client itself.

    python benchmarks/noop_stream_server.py PORT [CHUNKS]

POST /v1/chat/completions streams CHUNKS token chunks, a usage chunk and [DONE] as fast as it
can, each chunk its own write. For each request it records the server-side TTFT (request fully
read -> first token chunk handed to the socket) under the client's X-Harness-Request id;
GET /stats returns them. One asyncio event loop and pre-encoded chunks keep the server's own
cost per request far below the client's, so the client is what limits the request rate.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time

PORT = int(sys.argv[1])
CHUNKS = int(sys.argv[2]) if len(sys.argv) > 2 else 16
STATS: dict[str, float] = {}


def _frame(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _event(obj: object) -> bytes:
    return _frame(b"data: " + json.dumps(obj).encode() + b"\n\n")


TOKEN_CHUNKS = [
    _event(
        {
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": f"t{i} "}}],
        }
    )
    for i in range(CHUNKS)
]
TAIL = (
    _event(
        {
            "object": "chat.completion.chunk",
            "choices": [],
            "usage": {"prompt_tokens": 3, "completion_tokens": CHUNKS},
        }
    )
    + _frame(b"data: [DONE]\n\n")
    + b"0\r\n\r\n"
)
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
)


class Handler(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        # Without it the first chunk waits behind the headers for a delayed ACK (about 40 ms).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1")
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (ln.partition(":") for ln in head.split("\r\n")[1:])
            }
            length = int(headers.get("content-length", "0"))
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            if head.startswith("GET"):
                body = json.dumps(STATS).encode()
                self.transport.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
            else:
                self.stream(headers.get("x-harness-request", ""))

    def stream(self, request_id: str) -> None:
        received = time.perf_counter()
        self.transport.write(STREAM_HEAD)
        self.transport.write(TOKEN_CHUNKS[0])
        STATS[request_id] = time.perf_counter() - received
        for chunk in TOKEN_CHUNKS[1:]:
            self.transport.write(chunk)
        self.transport.write(TAIL)


async def main() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Handler, "127.0.0.1", PORT, backlog=1024)
    print(f"noop server on 127.0.0.1:{PORT}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
