"""An exclusive lock on a file beside what it guards, for writers in separate processes.

A history file written by a nightly and a run finalized by hand, or a twin build started in the
background by `make test` and the one the test session asks for: the second waits for the first,
then sees its result, instead of both writing the same thing.
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

POLL_S = 0.5


@contextlib.contextmanager
def locked(
    path: Path,
    *,
    waiting: str | None = None,
    progress: Callable[[str], None] | None = None,
    every_s: float = 10.0,
) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created if missing) for the block.

    When another process holds it and `progress` is given, say `waiting` at once and then every
    `every_s` seconds with the time waited, so a long wait is never silent. The lock goes with
    the process: one that is killed cannot leave it held.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        if progress is None:
            fcntl.flock(f, fcntl.LOCK_EX)
        else:
            _wait(f, waiting or f"waiting for the lock {path}", progress, every_s)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _wait(f: TextIO, waiting: str, progress: Callable[[str], None], every_s: float) -> None:
    start = time.monotonic()
    said = None
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if said is not None:
                progress(f"{waiting}: done after {time.monotonic() - start:.0f} s")
            return
        except BlockingIOError:
            now = time.monotonic()
            if said is None or now - said >= every_s:
                progress(waiting if said is None else f"{waiting}: {now - start:.0f} s")
                said = now
            time.sleep(POLL_S)
