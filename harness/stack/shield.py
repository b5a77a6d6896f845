"""Interrupts deferred while a step that must finish runs: the restore of the production stack.

A second Ctrl-C, a SIGTERM or a hang-up's SIGHUP in the middle of an up-to-20-minute restore
would otherwise leave production half stopped. Inside `deferring_interrupts` each one is
recorded and reported at once, and the KeyboardInterrupt comes when the step is done. A signal
that is ignored stays ignored. Signal handlers exist only on the main thread: elsewhere the
block runs unshielded. Shields nest: an inner one reports through the outer one's handlers.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

DEFERRED = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class Shield:
    """What is being finished (for the message), how far it is, and the signals received."""

    def __init__(self, doing: str, finishing: str, say: Callable[[str], None]) -> None:
        self.doing = doing  # "restoring production"
        self.finishing = finishing  # "the restore"
        self.say = say
        self.status = ""  # how far: "vllm-router, 1 of 3"
        self.received: list[int] = []

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        where = f" ({self.status})" if self.status else ""
        # Best-effort: the terminal may be dead, or the write this handler interrupted may
        # hold the stream.
        with contextlib.suppress(Exception):
            self.say(
                f"{self.doing}: interrupt received ({signal.Signals(signum).name}), finishing "
                f"{self.finishing} first{where}"
            )


_active: Shield | None = None


@contextlib.contextmanager
def deferring_interrupts(
    doing: str, finishing: str, say: Callable[[str], None], *, reraise: bool = True
) -> Iterator[Shield]:
    """Defer SIGINT, SIGTERM and SIGHUP for the block. After a block that completes, a deferred
    interrupt is raised as KeyboardInterrupt when `reraise`; an exception out of the block goes
    on as it is (the interrupt was reported when it came)."""
    global _active
    if threading.current_thread() is not threading.main_thread():
        yield Shield(doing, finishing, say)
        return
    if _active is not None:  # nested: the outer shield's handlers are in place
        outer = _active
        saved = outer.doing, outer.finishing, outer.status
        outer.doing, outer.finishing, outer.status = doing, finishing, ""
        try:
            yield outer
        finally:
            outer.doing, outer.finishing, outer.status = saved
        return
    shield = Shield(doing, finishing, say)
    before = {}
    for sig in DEFERRED:
        handler = signal.getsignal(sig)
        if handler is signal.SIG_IGN or handler is None:  # ignored, or not Python's to restore
            continue
        before[sig] = handler
        signal.signal(sig, shield.on_signal)
    _active = shield
    try:
        yield shield
    finally:
        _active = None
        for sig, handler in before.items():
            signal.signal(sig, handler)
    if shield.received and reraise:
        raise KeyboardInterrupt(f"signal {shield.received[0]}, deferred until {finishing} was done")
