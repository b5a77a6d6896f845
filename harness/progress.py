"""Live progress on the long steps: twin build, health waits, image pulls, load runs.

One small interface, two renderings. `Reporter.line(text)` writes one line;
`Reporter.task(name, total_s)` is a timed step whose `update(elapsed_s, text)` reports how far
it is. On a terminal (`RichReporter`) a task is a rich progress bar with elapsed and remaining
columns and lines scroll above it; anywhere else (cron, `nightly.log`, pytest)
`PlainReporter` writes each update as one line through a `Callable[[str], None]`.

A reporter is itself such a callable, so it plugs into the `progress=` seam the backends, the
twin build and prefetch already take; code that only has that callable (the pytest plugin's
terminal-reporter writer) wraps it with `as_reporter`.

The load runner has no `progress=` parameter: it reports through `current()`, the reporter the
CLI command (or the pytest plugin) installed with `use()`.

Progress is best-effort: a line that cannot be written (a dead terminal returns EIO to every
write after an SSH hang-up; a closed pipe) is dropped, and the step it reports on goes on.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import ProgressBar, TaskID
    from rich.progress import Task as RichTaskState

Write = Callable[[str], None]
# wait_healthy's callback: (elapsed_s, budget_s, last state seen)
OnWait = Callable[[float, float, str], None]

# HARNESS_PROGRESS=plain|rich overrides the terminal check (auto).
MODE_ENV = "HARNESS_PROGRESS"
LOAD_EVERY_S = 5.0
# On a terminal the bar redraws itself; the numbers beside it are refreshed this often.
LIVE_EVERY_S = 1.0


class Task(ABC):
    """A timed step in progress."""

    @abstractmethod
    def update(self, elapsed_s: float, text: str) -> None:
        """`elapsed_s` against the task's total; `text` is what else is known now."""


class Reporter(ABC):
    """Where progress goes. Callable with one line, like the `progress=` seam it replaces."""

    # True when the display redraws itself, so updates may come as often as they change.
    live: bool = False

    @abstractmethod
    def line(self, text: str) -> None: ...

    @abstractmethod
    def task(self, name: str, total_s: float) -> contextlib.AbstractContextManager[Task]: ...

    def waiting(self, name: str, elapsed_s: float, budget_s: float, last: str) -> None:
        """A health wait still under way (see `health_waiter`)."""
        self.line(waiting_line(name, elapsed_s, budget_s, last))

    def close(self) -> None:  # noqa: B027 - optional: plain lines hold nothing to hand back
        """Hand the terminal back; safe to call twice."""

    def __call__(self, text: str) -> None:
        self.line(text)

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def waiting_line(name: str, elapsed_s: float, budget_s: float, last: str) -> str:
    return f"still waiting for {name}: {elapsed_s:.0f}/{budget_s:.0f} s, last: {last}"


def task_line(name: str, elapsed_s: float, total_s: float, text: str) -> str:
    head = f"{name}: {elapsed_s:.0f}/{total_s:.0f} s"
    return f"{head} · {text}" if text else head


# -- plain lines ------------------------------------------------------------------------------


class _PlainTask(Task):
    def __init__(self, name: str, total_s: float, write: Write) -> None:
        self.name, self.total_s, self._write = name, total_s, write

    def update(self, elapsed_s: float, text: str) -> None:
        with contextlib.suppress(OSError):  # a dead terminal: the line is lost, not the run
            self._write(task_line(self.name, elapsed_s, self.total_s, text))


class PlainReporter(Reporter):
    """One line per event through `write` (print, or pytest's terminal reporter)."""

    def __init__(self, write: Write = print) -> None:
        self.write = write

    def line(self, text: str) -> None:
        with contextlib.suppress(OSError):  # a dead terminal: the line is lost, not the step
            self.write(text)

    @contextlib.contextmanager
    def task(self, name: str, total_s: float) -> Iterator[Task]:
        yield _PlainTask(name, total_s, self.write)


# -- rich, on a terminal ----------------------------------------------------------------------


def _elapsed(task: RichTaskState) -> float:
    # Anchored to the caller's clock at each update and ticking on between updates, so a bar
    # that hears from a health wait only every 10 s still moves every redraw.
    return max(0.0, time.monotonic() - float(task.fields["t0"]))


def _rich_columns() -> tuple[Any, ...]:
    from rich.progress import BarColumn, ProgressColumn, TextColumn
    from rich.text import Text

    class TimeBar(BarColumn):
        def render(self, task: RichTaskState) -> ProgressBar:
            from rich.progress import ProgressBar

            total = max(task.total or 0.0, 1e-9)
            return ProgressBar(
                total=total,
                completed=min(_elapsed(task), total),
                width=None if self.bar_width is None else max(1, self.bar_width),
                animation_time=task.get_time(),
                style=self.style,
                complete_style=self.complete_style,
                finished_style=self.finished_style,
                pulse_style=self.pulse_style,
            )

    class Elapsed(ProgressColumn):
        def render(self, task: RichTaskState) -> Text:
            return Text(f"{_elapsed(task):.0f}/{task.total or 0:.0f} s", style="progress.elapsed")

    class Remaining(ProgressColumn):
        def render(self, task: RichTaskState) -> Text:
            left = (task.total or 0.0) - _elapsed(task)
            text = f"{left:.0f} s left" if left > -0.5 else f"{-left:.0f} s over"
            return Text(text, style="progress.remaining")

    return (
        TextColumn("{task.description}", markup=False),
        TimeBar(bar_width=30),
        Elapsed(),
        Remaining(),
        TextColumn("{task.fields[detail]}", markup=False),
    )


class _RichTask(Task):
    def __init__(self, owner: RichReporter, task_id: TaskID, name: str, total_s: float) -> None:
        self._owner, self._id, self.name, self.total_s = owner, task_id, name, total_s
        self.last = task_line(name, 0.0, total_s, "")

    def update(self, elapsed_s: float, text: str) -> None:
        self.last = task_line(self.name, elapsed_s, self.total_s, text)
        with self._owner._lock:
            if self._id in self._owner._tasks:  # a ticker thread may outlive its bar
                self._owner._progress.update(
                    self._id, detail=text, t0=time.monotonic() - elapsed_s, completed=elapsed_s
                )


class RichReporter(Reporter):
    """rich.progress bars for tasks and health waits; lines print above them.

    The live display runs only while a bar is shown, so that a traceback or a prompt after a
    step never fights with it. A health wait's bar ends with the next line, which is that
    wait's outcome (healthy, or the error).
    """

    live = True

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console
        from rich.progress import Progress

        self.console = console or Console()
        self._progress = Progress(
            *_rich_columns(), console=self.console, refresh_per_second=2, transient=False
        )
        self._lock = threading.RLock()
        self._tasks: set[TaskID] = set()
        self._waits: dict[str, TaskID] = {}
        self._running = False

    def line(self, text: str) -> None:
        with self._lock, contextlib.suppress(OSError):  # a dead terminal loses the line only
            self._end_waits()
            self.console.print(text, markup=False, highlight=False, emoji=False)

    @contextlib.contextmanager
    def task(self, name: str, total_s: float) -> Iterator[Task]:
        task_id = self._add(name, total_s, "")
        handle = _RichTask(self, task_id, name, total_s)
        try:
            yield handle
        finally:
            with self._lock, contextlib.suppress(OSError):
                self._remove(task_id)
                # The bar goes; its last numbers stay in the scrollback.
                self.console.print(handle.last, markup=False, highlight=False, emoji=False)

    def waiting(self, name: str, elapsed_s: float, budget_s: float, last: str) -> None:
        with self._lock:
            task_id = self._waits.get(name)
            if task_id is None:
                self._waits[name] = self._add(f"waiting for {name}", budget_s, f"last: {last}")
                task_id = self._waits[name]
            self._progress.update(
                task_id, detail=f"last: {last}", t0=time.monotonic() - elapsed_s,
                completed=elapsed_s,
            )  # fmt: skip

    def close(self) -> None:
        with self._lock:
            for task_id in list(self._tasks):
                self._remove(task_id)
            self._waits.clear()
            self._stop()

    def _add(self, description: str, total_s: float, detail: str) -> TaskID:
        with self._lock:
            task_id = self._progress.add_task(
                description, total=max(total_s, 1e-9), detail=detail, t0=time.monotonic()
            )
            self._tasks.add(task_id)
            if not self._running:
                self._running = True  # set first: a start that fails half way is stopped too
                with contextlib.suppress(OSError):
                    self._progress.start()
            return task_id

    def _remove(self, task_id: TaskID) -> None:
        if task_id in self._tasks:
            self._tasks.discard(task_id)
            self._progress.remove_task(task_id)
        if not self._tasks:
            self._stop()

    def _end_waits(self) -> None:
        for task_id in self._waits.values():
            self._remove(task_id)
        self._waits.clear()

    def _stop(self) -> None:
        if self._running:
            self._running = False
            with contextlib.suppress(OSError):
                self._progress.stop()


# -- choosing one, and the one in use ---------------------------------------------------------


def choose(write: Write | None = None, *, stream: IO[str] | None = None) -> Reporter:
    """`write` given (pytest's terminal reporter): plain lines through it. Otherwise rich when
    `stream` (stdout) is a terminal, plain `print` lines when it is not; HARNESS_PROGRESS=plain
    or =rich overrides that check."""
    if write is not None:
        return as_reporter(write)
    mode = os.environ.get(MODE_ENV, "auto").strip().lower()
    out = stream if stream is not None else sys.stdout
    tty = bool(getattr(out, "isatty", lambda: False)())
    if mode == "rich" or (mode != "plain" and tty):
        from rich.console import Console

        return RichReporter(Console(file=stream, force_terminal=mode == "rich" or None))
    return PlainReporter(print if stream is None else _writer(stream))


def _writer(stream: IO[str]) -> Write:
    def write(text: str) -> None:
        with contextlib.suppress(OSError):  # a dead terminal or a closed pipe
            stream.write(text + "\n")
            stream.flush()

    return write


def best_effort(write: Write) -> Write:
    """`write` that never raises, for steps that must finish whatever their report does (the
    production restore): a dead terminal, a closed pipe or a faulty writer loses the line and
    nothing else."""

    def guarded(text: str) -> None:
        with contextlib.suppress(Exception):
            write(text)

    return guarded


def as_reporter(progress: Write) -> Reporter:
    """A reporter for whatever sits in a `progress=` seam: itself, or plain lines through it."""
    return progress if isinstance(progress, Reporter) else PlainReporter(progress)


_current: Reporter | None = None


def current() -> Reporter:
    """The reporter installed by `use()`; plain `print` lines when none is."""
    return _current if _current is not None else PlainReporter()


@contextlib.contextmanager
def use(progress: Write) -> Iterator[Reporter]:
    """Install `progress` (a reporter, or any line writer) as `current()` for the block."""
    global _current
    before, _current = _current, as_reporter(progress)
    try:
        yield _current
    finally:
        _current = before


@contextlib.contextmanager
def reporting(write: Write | None = None, *, stream: IO[str] | None = None) -> Iterator[Reporter]:
    """A CLI command's progress: `choose()` one, install it, hand the terminal back at the end."""
    reporter = choose(write, stream=stream)
    with reporter, use(reporter):
        yield reporter


# -- the load ticker --------------------------------------------------------------------------


class SampleSource(Protocol):
    """What the ticker reads of telemetry.sampler.Sampler: its timeline rows, newest last."""

    @property
    def rows(self) -> Sequence[Mapping[str, Any]]: ...


class RecordTally:
    """Requests and errors so far, from the requests JSON-lines file the load child appends to.

    Reads only what was added since the last call, and only whole lines: the child may be
    halfway through writing one.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.requests = 0
        self.errors = 0
        self._offset = 0

    def poll(self) -> tuple[int, int]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except OSError:  # not written yet
            return self.requests, self.errors
        end = chunk.rfind(b"\n") + 1
        self._offset += end
        for raw in chunk[:end].splitlines():
            if not raw.strip():
                continue
            self.requests += 1
            try:
                ok = json.loads(raw).get("ok", True)
            except (ValueError, AttributeError):
                ok = True  # counted as a request; its own reader reports the bad line
            self.errors += not ok
        return self.requests, self.errors


def latest_row(source: SampleSource, engine: str) -> Mapping[str, Any] | None:
    rows = source.rows
    # Rows come in rounds of one per engine; a short look back finds the newest of `engine`.
    for row in reversed(rows[-16:]):
        if row.get("engine") == engine:
            return row
    return None


def load_text(requests: int, errors: int, row: Mapping[str, Any] | None) -> str:
    """`212 req · 0 err · KV 83% · running 3 · waiting 2` (engine figures from a timeline row)."""
    parts = [f"{requests} req", f"{errors} err"]
    if row is None:
        parts.append("no /metrics yet")
    else:
        kv = row.get("kv_usage")
        parts.append(f"KV {_percent(float(kv))}" if kv is not None else "KV ?")
        for key in ("running", "waiting"):
            value = row.get(key)
            parts.append(f"{key} {float(value):.0f}" if value is not None else f"{key} ?")
    return " · ".join(parts)


def _percent(fraction: float) -> str:
    # A twin's pool is sized for the GPU, so short prompts fill well under 1% of it: "0%" would
    # read as an idle engine.
    pct = fraction * 100
    return f"{pct:.0f}%" if pct >= 10 or pct == 0 else f"{pct:.1f}%"


@contextlib.contextmanager
def load_ticker(
    name: str,
    duration_s: float,
    source: SampleSource,
    records: Path,
    engine: str,
    *,
    reporter: Reporter | None = None,
    every_s: float | None = None,
) -> Iterator[None]:
    """While the block runs (the wait for the load child), report elapsed against
    `duration_s`, requests and errors so far (from `records`) and `engine`'s KV usage, running
    and waiting (from `source`) every `every_s`: LOAD_EVERY_S as lines, LIVE_EVERY_S on a
    terminal."""
    reporter = reporter or current()
    every = every_s or (LIVE_EVERY_S if reporter.live else LOAD_EVERY_S)
    tally = RecordTally(records)
    stop = threading.Event()
    start = time.monotonic()

    def run(task: Task) -> None:
        while not stop.wait(every):
            requests, errors = tally.poll()
            text = load_text(requests, errors, latest_row(source, engine))
            task.update(time.monotonic() - start, text)

    with reporter.task(name, duration_s) as task:
        thread = threading.Thread(target=run, args=(task,), name="harness-load-ticker", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)
            if reporter.live:  # the bar's last numbers are what stays on screen
                requests, errors = tally.poll()
                task.update(
                    time.monotonic() - start,
                    load_text(requests, errors, latest_row(source, engine)),
                )
