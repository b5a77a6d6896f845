"""Live container logs into `<run dir>/logs/<service>.log`, one thread per container.

The thread follows `logs(stream=True, follow=True)` until the container stops, so the file has
the last lines of a container that died, for the StartupError's tail. Values of the container's
secrets are replaced line by line before anything reaches the file.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

from harness.compose.services import MASK


class LogFollower(threading.Thread):
    def __init__(self, container: Any, path: Path, secrets: tuple[str, ...] = ()) -> None:
        super().__init__(name=f"logs-{path.stem}", daemon=True)
        self._container = container
        self._path = path
        self._secrets = sorted((s.encode() for s in secrets if s), key=len, reverse=True)
        self._stream: Any = None
        self._closed = threading.Event()

    def _mask(self, line: bytes) -> bytes:
        for value in self._secrets:
            line = line.replace(value, MASK.encode())
        return line

    def run(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with self._path.open("ab") as fh:
            try:
                self._stream = self._container.logs(stream=True, follow=True)
                pending = b""
                for chunk in self._stream:
                    # Whole lines only, so a secret split across two chunks is still masked.
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        fh.write(self._mask(line) + b"\n")
                    fh.flush()
                    if self._closed.is_set():
                        break
                if pending:
                    fh.write(self._mask(pending) + b"\n")
            except Exception as exc:  # the container went away mid-stream: the file says so
                if not self._closed.is_set():
                    fh.write(f"[harness] log stream ended: {type(exc).__name__}\n".encode())

    def finish(self, timeout_s: float = 3.0) -> None:
        """Wait for the stream to end (the container stopped), then cut it off."""
        self.join(timeout_s)
        self.close()

    def close(self) -> None:
        self._closed.set()
        if self._stream is not None:
            with contextlib.suppress(Exception):
                self._stream.close()
        self.join(2.0)
