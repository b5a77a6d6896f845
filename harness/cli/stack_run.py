"""A measuring command's run against a stack: the stack `harness up` recorded when it fits,
else one brought up for the run and stopped after it; the run's record started, finished and
rendered on every way out (`harness capacity`, `harness envelope`)."""

from __future__ import annotations

import argparse
import shutil
import signal
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.cli.common import raise_interrupt, recorded_misfit
from harness.errors import InputError, StackError


def recorded(ns: argparse.Namespace, command: str) -> dict[str, Any] | None:
    """The stack `harness up` recorded when it fits this run, None when none is up or the run
    attaches; a stack up that does not fit refuses the run (no second stack beside it)."""
    from harness.stack import state

    doc = state.load()
    if doc is None or ns.target == "attach":
        return None
    why = recorded_misfit(doc, ns.target, ns.compose, command)
    if why:
        raise StackError(why)
    return doc


@dataclass
class StackRun:
    """What the command's body gets: the stack, its run directory and record, progress."""

    stack: Any
    run_dir: Path
    run: Any  # harness.report.load_run.LoadRunRecord
    progress: Callable[[str], None]
    recorded: bool  # the stack `harness up` started (left up)
    written: list[Path] = field(default_factory=list)  # the reports, once finished
    passed: bool = False  # set by the body when its result is complete


@contextmanager
def stack_run(
    ns: argparse.Namespace,
    settings: Any,
    command: str,
    *,
    kv_overrides: Mapping[str, int] | None = None,
) -> Iterator[StackRun]:
    """Bring up (or reuse) the stack for `ns.target`, yield it, and on every way out stop what
    was started, finish the record ("passed" when the body set `passed`) and render the
    reports. Bad input found during the bring-up removes the run directory."""
    from harness.compose import load_stack
    from harness.progress import reporting
    from harness.report.finalize import finalize_run
    from harness.report.load_run import LoadRunRecord
    from harness.report.run_dir import new_run_dir
    from harness.stack.base import Backend
    from harness.stack.factory import make_backend
    from harness.stack.state import RecordedBackend

    up = recorded(ns, command)
    if up is not None and kv_overrides:
        raise InputError(
            f"--kv-tokens: the {up['target']} stack `harness up` started runs with its own "
            f"pools; `harness down` first, or pass --kv-tokens to `harness up`"
        )
    target = ns.target or (up["target"] if up else "twin")
    spec = load_stack(ns.compose)
    run_dir = new_run_dir(f"{target}-{command}")
    run = LoadRunRecord.start(run_dir, target, ns.compose, settings)
    signal.signal(signal.SIGTERM, raise_interrupt)
    bad_input = False
    with reporting() as progress:
        result: StackRun | None = None
        try:
            try:
                backend: Backend
                if up is not None:
                    backend = RecordedBackend(up, spec, run_dir)
                    progress(f"using the {target} stack `harness up` started ({up['run_dir']})")
                else:
                    backend = make_backend(
                        target, ns.compose, settings, run_dir, progress=progress,
                        kv_overrides=kv_overrides,
                    )  # fmt: skip
                stack = backend.up()
            except InputError:
                bad_input = True
                raise
            run.stack_up(stack)
            result = StackRun(stack, run_dir, run, progress, recorded=up is not None)
            try:
                yield result
            finally:
                backend.down()
        finally:
            if bad_input:
                shutil.rmtree(run_dir, ignore_errors=True)
            else:
                run.record.finish("passed" if result is not None and result.passed else "failed")
                written = finalize_run(run_dir)
                if result is not None:
                    result.written = written
