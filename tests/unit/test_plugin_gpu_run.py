"""The plugin's rules for a run against the real stack, checked in child pytest sessions:
`-m gpu` selects every test of the stack and implies the gpu target, SIGHUP tears down like
Ctrl-C, and keep-stack with replace-running is refused."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

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
