"""`--harness-require-{twin,docker,chromium}` (or HARNESS_REQUIRE_*=1, what CI sets): a test that
would skip for want of the capability fails instead, saying why; without it the skip stands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

INNER = """
import pytest
from harness.pytest_require import skip_or_fail

def test_needs_docker():
    pytest.skip("no Docker engine: Error while fetching server API version")

def test_needs_chromium():
    pytest.skip("headless check needs Debian's chromium: no chromium to render the report with")

def test_needs_the_twin(request):
    skip_or_fail(request.config, "twin", "vllm is not installed (make install, extra 'twin')")

def test_opt_in():
    pytest.skip("opt-in, 10 minutes at saturate load: pass --harness-soak")
"""
MODULE_SKIP = """
import pytest
pytest.importorskip("vllm_not_installed_here")
from vllm_not_installed_here import x
"""


def session(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, source: str = INNER
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_inner.py").write_text(source)
    base = {k: v for k, v in os.environ.items() if not k.startswith("HARNESS_REQUIRE_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "--rootdir",
         str(tmp_path), "test_inner.py", *args],
        cwd=tmp_path, env={**base, **(env or {})}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_without_requirements_every_skip_stands_with_its_reason(tmp_path: Path) -> None:
    run = session(tmp_path)
    assert run.returncode == 0, run.stdout
    assert "4 skipped" in run.stdout
    assert "no Docker engine" in run.stdout and "vllm is not installed" in run.stdout


@pytest.mark.parametrize(
    ("args", "env", "failed"),
    [
        (["--harness-require-docker"], {}, "test_needs_docker"),
        ([], {"HARNESS_REQUIRE_DOCKER": "1"}, "test_needs_docker"),
        (["--harness-require-chromium"], {}, "test_needs_chromium"),
        ([], {"HARNESS_REQUIRE_CHROMIUM": "1"}, "test_needs_chromium"),
        (["--harness-require-twin"], {}, "test_needs_the_twin"),
        ([], {"HARNESS_REQUIRE_TWIN": "1"}, "test_needs_the_twin"),
    ],
)
def test_a_required_capability_turns_its_skip_into_a_failure(
    tmp_path: Path, args: list[str], env: dict[str, str], failed: str
) -> None:
    run = session(tmp_path, *args, env=env)
    assert run.returncode == 1, run.stdout
    assert "1 failed" in run.stdout and "3 skipped" in run.stdout, run.stdout
    assert f"test_inner.py::{failed}" in run.stdout.split("short test summary info")[1]
    assert "required" in run.stdout and "opt-in" in run.stdout


def test_a_module_skipped_for_want_of_the_twin_fails_when_it_is_required(tmp_path: Path) -> None:
    # The twin's own modules import-skip torch, tokenizers or vllm at module level.
    source = MODULE_SKIP.replace("vllm_not_installed_here", "vllm")
    env = {"PYTHONPATH": str(tmp_path / "no-vllm")}
    (tmp_path / "no-vllm" / "vllm").mkdir(parents=True)
    # A package that reports itself missing stands in for an uninstalled one.
    (tmp_path / "no-vllm" / "vllm" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'vllm'\", name='vllm')\n"
    )
    skipped = session(tmp_path, env=env, source=source)
    assert skipped.returncode == pytest.ExitCode.NO_TESTS_COLLECTED, skipped.stdout
    assert "1 skipped" in skipped.stdout
    run = session(tmp_path, "--harness-require-twin", env=env, source=source)
    assert run.returncode in (pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.INTERRUPTED), run.stdout
    assert "required (--harness-require-twin" in run.stdout and "could not import 'vllm'" in (
        run.stdout
    )
