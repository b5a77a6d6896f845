"""A keep-alive HTTP/1.1 connection for the load users that hands the response body back one
socket read at a time.

Timing a stream needs the bytes as the network delivers them: a client that fills a fixed-size
buffer before returning (geventhttpclient's `read(n)`, locust's `FastResponse.iter_content`)
holds early tokens back until later ones arrive, and one that splits by lines into a bounded
buffer fails on an event larger than it. Here each `recv` is one piece, however
small or large, and nothing downstream limits an event's size. Framing (chunked transfer) is
decoded by geventhttpclient's llhttp parser; the socket is gevent's, so a locust process runs
many of these at once. Imported by the locust users only: it never monkey-patches anything.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from gevent import select, socket
from gevent import ssl as gssl
from geventhttpclient.header import Headers
from geventhttpclient.response import HTTPParseError, HTTPResponse

# One recv's ceiling, not a unit of delivery: a read returns whatever the kernel holds.
READ_SIZE = 256 * 1024

__all__ = ["HTTPParseError", "StreamClient", "StreamResponse", "Transport"]


class _Parser(HTTPResponse):
    """geventhttpclient's response parser, keeping body pieces apart instead of joining them."""

    def __init__(self, method: str) -> None:
        super().__init__(method=method, headers_type=Headers)
        self.pieces: list[bytes] = []

    def _on_body(self, buf: bytearray) -> None:
        self.pieces.append(bytes(buf))


@dataclass
class StreamResponse:
    status: int
    _client: StreamClient
    _parser: _Parser
    _first: list[bytes]

    def header(self, name: str) -> str | None:
        value = self._parser.get(name)
        if isinstance(value, list):
            return ", ".join(value)
        return value

    def reads(self) -> Iterator[bytes]:
        """The body, one item per socket read that carried body bytes (chunk framing removed)."""
        if self._first:
            yield b"".join(self._first)
            self._first = []
        while not self._parser.message_complete:
            self._client._recv_into(self._parser)
            if self._parser.pieces:
                piece = b"".join(self._parser.pieces)
                self._parser.pieces.clear()
                yield piece
        self._client._finished(self._parser)

    def read_all(self, limit: int = 1 << 20) -> bytes:
        """The rest of the body, up to `limit` bytes kept (the rest is read and dropped)."""
        out = bytearray()
        for piece in self.reads():
            if len(out) < limit:
                out += piece[: limit - len(out)]
        return bytes(out)

    def close(self) -> None:
        """Give the connection back: kept when the body was read to its end, else closed."""
        self._client._finished(self._parser)


class Transport:
    """Where a StreamClient's bytes go: a socket, or a fake in tests."""

    def connect(self, host: str, port: int, tls: bool, timeout_s: float) -> socket.socket:
        sock = socket.create_connection((host, port), timeout=timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            ctx = gssl.create_default_context()
            sock = ctx.wrap_socket(sock, server_hostname=host)
        return sock

    def alive(self, sock: socket.socket) -> bool:
        """An idle keep-alive socket is never readable: readable means closed or dirty."""
        try:
            if sock.fileno() < 0:
                return False
            ready, _, _ = select.select([sock], [], [], 0.0)
            return not ready
        except (OSError, ValueError):
            return False


class StreamClient:
    """One keep-alive connection to one origin, one request at a time (one per load user, as a
    browser-like client would hold it). Raises OSError for network failures and HTTPParseError
    for a malformed response."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 900.0,
        transport: Transport | None = None,
        on_connect: Callable[[], None] | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        self.prefix = parts.path.rstrip("/")
        default_port = self.port == (443 if self.tls else 80)
        self.host_header = self.host if default_port else f"{self.host}:{self.port}"
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.transport = transport or Transport()
        self.on_connect = on_connect
        self._sock: socket.socket | None = None
        self.connections = 0  # opened over the client's life, for connection-reuse checks

    def _socket(self) -> socket.socket:
        if self._sock is not None and not self.transport.alive(self._sock):
            self._drop()
        if self._sock is None:
            self._sock = self.transport.connect(
                self.host, self.port, self.tls, self.connect_timeout_s
            )
            self._sock.settimeout(self.read_timeout_s)
            self.connections += 1
            if self.on_connect is not None:
                self.on_connect()
        return self._sock

    def _drop(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> StreamResponse:
        """Send the request and read up to the end of the response headers."""
        head = [
            f"POST {self.prefix}{path} HTTP/1.1",
            f"Host: {self.host_header}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
        ]
        head += [f"{k}: {v}" for k, v in headers.items()]
        raw = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        sock = self._socket()
        parser = _Parser("POST")
        try:
            sock.sendall(raw)
            while not parser.headers_complete:
                self._recv_into(parser)
        except BaseException:
            self._drop()
            raise
        first = list(parser.pieces)
        parser.pieces.clear()
        return StreamResponse(parser.status_code, self, parser, first)

    def _recv_into(self, parser: _Parser) -> None:
        sock = self._sock
        if sock is None:
            raise ConnectionResetError("the connection was closed")
        try:
            data = sock.recv(READ_SIZE)
        except BaseException:
            self._drop()
            raise
        if not data:
            self._drop()
            raise ConnectionResetError("the server closed the connection mid-response")
        try:
            parser.feed(data)
        except HTTPParseError:
            self._drop()
            raise

    def _finished(self, parser: _Parser) -> None:
        if not parser.message_complete or not parser.should_keep_alive():
            self._drop()

    def close(self) -> None:
        self._drop()
