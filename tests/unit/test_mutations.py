"""scripts/mutations.py in the suite: every protection it lists is killed by its tests, and the
script itself tells a survivor and a stale mutation from a kill."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "mutations.py"

# The script copies the tree and starts a pytest per mutation: about 30 s on 2 idle cores, so
# it runs once per session, in its own process, with a bound well past that.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutations", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("mutations", module)
    spec.loader.exec_module(module)
    return module


def test_every_listed_mutation_is_killed() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=540
    )
    print(done.stdout, done.stderr)
    assert done.returncode == 0, f"a protection is not proven:\n{done.stdout}\n{done.stderr}"
    assert " | survived " not in done.stdout
    # Two at a time by default, in two copies; the table keeps the listed order.
    listed = [m.name for m in script().MUTATIONS]
    rows = [line.split(" | ")[0].strip() for line in done.stdout.splitlines() if " | " in line]
    assert rows[1:] == listed, rows


def test_a_mutation_no_test_catches_is_reported_as_survived(
    capsys: pytest.CaptureFixture[str],
) -> None:
    m = script()
    # Only a comment changes: the tests pass on it, as they would on a protection they miss.
    harmless = m.Mutation(
        "comment",
        "nothing",
        "harness/load/reconcile.py",
        "elif diff > bounds.above_ms:",
        "elif diff > bounds.above_ms:  # the same test",
        ("tests/unit/test_load_reconcile.py::test_a_client_a_few_ms_above_the_engine_reconciles",),
    )
    assert m.run([harmless]) == 1
    out = capsys.readouterr().out
    assert "comment | survived" in out and "0 of 1 killed" in out


def test_a_mutation_whose_text_is_gone_fails_before_anything_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    m = script()
    stale = m.Mutation("stale", "nothing", "harness/load/reconcile.py", "no such text", "", ())
    assert m.run([stale]) == 1
    assert "stale: its old text is in harness/load/reconcile.py 0 times" in capsys.readouterr().out


def test_every_mutation_names_a_unit_test_that_exists() -> None:
    for mutation in script().MUTATIONS:
        assert mutation.tests, mutation.name
        for node in mutation.tests:
            path, _, name = node.partition("::")
            assert path.startswith(("tests/unit/", "infra/ai-router/tests/")), node
            assert f"def {name}(" in (ROOT / path).read_text(), node
