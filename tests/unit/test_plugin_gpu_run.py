"""The plugin's rules for a run against the real stack, checked in child pytest sessions:
`-m gpu` selects every test of the stack and implies the gpu target, SIGHUP tears down like
Ctrl-C, and keep-stack with replace-running is refused. And the terminal a hang-up leaves
behind: progress written to it is lost, and nothing else."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any, TextIO

import pytest
from _pytest.terminal import TerminalReporter

from harness import progress
from harness.pytest_stack import _progress_writer

STACK_TESTS = """
import os, signal
import pytest

@pytest.fixture(scope="session")
def stack(harness_target):
    yield harness_target
    with open(os.environ["TEARDOWN_MARK"], "w") as fh:
        fh.write("torn down")

def test_uses_the_stack(stack):
    assert stack == "gpu"

@pytest.mark.twin
def test_needs_the_twin(stack):
    pass

def test_unit():
    pass

def test_hangs_up(stack):
    if os.environ.get("SEND_SIGHUP"):
        os.kill(os.getpid(), signal.SIGHUP)
"""


def test_dash_m_gpu_selects_every_stack_test_and_implies_the_gpu_target(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_stack=STACK_TESTS)
    monkeypatch.setenv("TEARDOWN_MARK", str(pytester.path / "mark"))
    result = pytester.runpytest_subprocess("-m", "gpu", "-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=2, deselected=2)
    assert "test_needs_the_twin" not in result.stdout.str()


def test_sighup_tears_the_stack_down_like_ctrl_c(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_stack=STACK_TESTS)
    mark = pytester.path / "mark"
    monkeypatch.setenv("TEARDOWN_MARK", str(mark))
    monkeypatch.setenv("SEND_SIGHUP", "1")
    # A session started under nohup inherits SIGHUP ignored, and the plugin leaves an ignored
    # signal alone; the child restores the default first, as a terminal session has it.
    with_sighup = (
        "import os, signal, sys; signal.signal(signal.SIGHUP, signal.SIG_DFL); "
        "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
    )
    done = subprocess.run(
        [sys.executable, "-c", with_sighup, "-m", "pytest", "-m", "gpu", "-p", "no:cacheprovider"],
        cwd=pytester.path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == pytest.ExitCode.INTERRUPTED, done.stdout + done.stderr
    assert f"signal {int(signal.SIGHUP)}" in done.stdout + done.stderr
    assert mark.read_text() == "torn down"


def test_keep_stack_with_replace_running_is_refused(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest_subprocess(
        "--harness-keep-stack", "--harness-replace-running", "-p", "no:cacheprovider"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "would leave production stopped" in result.stderr.str()


def test_a_misspelt_slo_key_stops_the_session_before_any_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # [slo.*] is read when a profile runs; without the early check a typo there surfaced as a
    # failed load test after a whole bring-up.
    bad = pytester.path / "bad.toml"
    bad.write_text("[slo.kv-pressure.gpu]\nmin_waitng = 1\n")
    monkeypatch.setenv("HARNESS_CONFIG", str(bad))
    pytester.makepyfile(test_x="def test_x():\n    raise AssertionError('ran')\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "slo.kv-pressure.gpu.min_waitng: unknown SLO key 'min_waitng'" in err, err
    assert "did you mean 'min_waiting'?" in err and "ran" not in result.stdout.str()


# -- the terminal after a hang-up ---------------------------------------------------------------


@contextlib.contextmanager
def dead_terminal() -> Iterator[TextIO]:
    """A terminal after an SSH hang-up: a pty whose master side is closed, so that every write
    to it fails with EIO, as Linux does."""
    if not hasattr(os, "openpty"):
        pytest.skip("no pty on this platform")
    master, slave = os.openpty()
    os.close(master)
    try:
        os.write(slave, b"x\n")
    except OSError as exc:
        if exc.errno != errno.EIO:
            raise
    else:
        os.close(slave)
        pytest.skip("a pty without its master side still takes writes here")
    stream = os.fdopen(slave, "w", buffering=1)
    try:
        yield stream
    finally:
        with contextlib.suppress(OSError):
            stream.close()


class _Plugins:
    def __init__(self, plugins: dict[str, Any]) -> None:
        self.plugins = plugins

    def get_plugin(self, name: str) -> Any:
        return self.plugins.get(name)


def terminal_progress(config: pytest.Config, stream: TextIO) -> Callable[[str], None]:
    """The plugin's progress writer, with pytest's own terminal reporter writing to `stream`
    and this session's capture manager suspended around each write, as in a gpu run."""
    reporter = TerminalReporter(config, stream)
    capture = config.pluginmanager.get_plugin("capturemanager")
    plugins = _Plugins({"terminalreporter": reporter, "capturemanager": capture})
    return _progress_writer(SimpleNamespace(pluginmanager=plugins))  # type: ignore[arg-type]


def test_the_progress_writer_loses_its_lines_on_a_dead_terminal_and_raises_nothing(
    request: pytest.FixtureRequest,
) -> None:
    with dead_terminal() as tty:
        write = terminal_progress(request.config, tty)
        with pytest.raises(OSError) as err:  # the terminal itself: every write fails
            tty.write("direct\n")
        assert err.value.errno == errno.EIO
        write("restoring production container vllm-router (up to 600 s)")
        write("vllm-router: healthy")


@pytest.mark.parametrize("mode", ["plain", "rich"])
def test_the_cli_reporters_lose_their_lines_on_a_dead_terminal_and_raise_nothing(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`harness up` (a failed bring-up restores production) writes through these."""
    monkeypatch.setenv(progress.MODE_ENV, mode)
    with dead_terminal() as tty, progress.reporting(stream=tty) as reporter:
        kind = progress.RichReporter if mode == "rich" else progress.PlainReporter
        assert isinstance(reporter, kind)
        reporter("restoring production container vllm-router (up to 600 s)")
        reporter.line("vllm-router: healthy")
        with reporter.task("load", 10.0) as task:
            task.update(1.0, "3 req")
