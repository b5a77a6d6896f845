"""The planted-secret check: the planted stack copy, the search, and the session option.

CI runs the whole test session with `--harness-plant-secrets` (make test, HARNESS_PLANT_SECRETS=1)
and the session fails when a planted value shows up in anything the run wrote. These tests show
the pieces work, and that the check fails when a value does leak.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.compose import load_stack
from harness.compose.env_file import service_env_files
from harness.report.planted_secrets import ConsoleTee, PlantedSession, plant, scan

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "infra" / "docker-compose.yml"


def test_the_planted_copy_gives_the_router_both_env_files(tmp_path: Path) -> None:
    planted = plant(COMPOSE, tmp_path / "stack")
    spec = load_stack(planted.compose)
    router = spec.role("router")
    given = service_env_files(spec, router, required=True)
    assert given["XAI_API_KEY"] == planted.secrets_file["XAI_API_KEY"]
    assert given["ROUTER_EXTRA_TOKEN"] == planted.router_env["ROUTER_EXTRA_TOKEN"]
    # The rest of the stack is the real one: the router's package and the load profiles.
    assert (planted.compose.parent / "ai-router" / "gunicorn.conf.py").is_file()
    assert (planted.root / "tests" / "load").is_dir()
    assert len(planted.values) == 8 and all(
        v.startswith("planted-") for v in planted.values.values()
    )
    assert planted.values[".secrets ROUTER_API_KEYS #2"].startswith("planted-router-")


def fake_run_dir(root: Path) -> Path:
    run = root / "runs" / "20260101T000000Z-twin"
    (run / "logs").mkdir(parents=True)
    (run / "load" / "steady").mkdir(parents=True)
    (run / "record.json").write_text(json.dumps({"status": "passed"}))
    (run / "logs" / "ai-router.log").write_text("GET /health 200\n")
    (run / "load" / "steady" / "requests.jsonl").write_text('{"status": 200}\n')
    return run


def test_a_value_planted_in_a_run_dir_is_found(tmp_path: Path) -> None:
    value = "planted-xai-0123456789abcdef"
    run = fake_run_dir(tmp_path)
    assert scan([run], {"xai": value}).hits == ()
    (run / "load" / "steady" / "stats.json").write_text(json.dumps({"errors": [f"key {value}"]}))
    result = scan([run], {".secrets XAI_API_KEY": value}, console=b"all fine\n")
    assert result.files == 4
    assert result.hits == (f"{run / 'load' / 'steady' / 'stats.json'}: .secrets XAI_API_KEY",)


def test_part_of_a_value_is_a_leak_too(tmp_path: Path) -> None:
    # As a truncated repr shows it in a traceback: `environ={..., ...7feea44f238f7db4ff3648'}`.
    value = "planted-openai-a1b27feea44f238f7db4ff3648"
    run = fake_run_dir(tmp_path)
    (run / "logs" / "pytest.log").write_text(
        "harness_settings = Settings(...7feea44f238f7db4ff3648')"
    )
    values = {"environment OPENAI_API_KEY": value}
    result = scan([run], values, console=b"key ...44f238f7db4ff36")  # any 15 characters
    assert result.hits == (
        f"{run / 'logs' / 'pytest.log'}: part of environment OPENAI_API_KEY",
        "console output: part of environment OPENAI_API_KEY",
    )
    assert scan([run], values, console=value[-11:].encode()).hits == result.hits[:1]


def test_a_value_across_a_read_boundary_is_found(tmp_path: Path) -> None:
    from harness.report.planted_secrets import _search_file

    value = b"planted-hf-0123456789abcdef"
    path = tmp_path / "big.log"
    for offset in range(len(value) + 2):
        path.write_bytes(b"x" * (64 - offset) + value + b"y" * 100)
        assert _search_file(path, [value], chunk=64)[0] == {value}, offset


def test_the_console_and_nothing_skipped_is_searched(tmp_path: Path) -> None:
    value = "planted-hf-0123456789abcdef"
    run = fake_run_dir(tmp_path)
    outside = tmp_path / "planted"
    outside.mkdir()
    (outside / ".secrets").write_text(f"HF_TOKEN={value}\n")
    (run / "logs" / "link").symlink_to(outside / ".secrets")
    console = f"token {value}\n".encode()
    result = scan([run, outside], {"hf": value}, console=console, skip=[outside])
    assert result.hits == ("console output: hf",)


def test_harness_check_json_writes_no_planted_value(tmp_path: Path) -> None:
    planted = plant(COMPOSE, tmp_path / "stack")
    check = subprocess.run(
        [str(Path(sys.executable).with_name("harness")), "check", "--compose",
         str(planted.compose), "--json"],
        cwd=ROOT, env={**os.environ, **planted.environ}, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    out = check.stdout + check.stderr
    assert json.loads(check.stdout)["findings"] is not None
    assert [label for label, v in planted.values.items() if v in out] == []


def test_console_tee_copies_what_a_child_process_writes(tmp_path: Path) -> None:
    # In a child of its own: the tee takes over this process's file descriptors 1 and 2.
    code = (
        "import subprocess, sys; from pathlib import Path; "
        "from harness.report.planted_secrets import ConsoleTee; "
        "tee = ConsoleTee(Path(sys.argv[1])); tee.start(); "
        "print('from python', flush=True); "
        "subprocess.run(['sh', '-c', 'echo from a child; echo to stderr >&2']); "
        "text = tee.text(); tee.stop(); "
        "assert b'from python' in text and b'from a child' in text and b'to stderr' in text, text"
    )
    log = tmp_path / "console.log"
    run = subprocess.run(
        [sys.executable, "-c", code, str(log)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout + run.stderr
    # ... and passes it on unchanged, the sync marker stripped.
    assert run.stdout == "from python\nfrom a child\n" and run.stderr == "to stderr\n"
    assert ConsoleTee._MARKER not in log.read_bytes()


LEAKY = """
import os, subprocess

def test_prints_a_value():
    print("debug:", os.environ["HF_TOKEN"])

def test_a_child_prints_a_value():
    subprocess.run(["sh", "-c", "echo $OPENAI_API_KEY"])
"""
CLEAN = """
import os

def test_uses_a_value_quietly():
    assert os.environ["HF_TOKEN"].startswith("planted-hf-")
"""


def session(tmp_path: Path, source: str, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_inner.py").write_text(source)
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_PLANT_SECRETS"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--rootdir",
         str(tmp_path), "--harness-compose", str(COMPOSE), "test_inner.py", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_a_session_that_prints_a_planted_value_fails(tmp_path: Path) -> None:
    run = session(tmp_path, LEAKY, "--harness-plant-secrets", "--capture=tee-sys")
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "2 passed" in out, "the tests themselves pass: the check fails the session"
    assert "harness: planted secret written: console output: environment HF_TOKEN" in out, out
    assert "harness: planted secret written: console output: environment OPENAI_API_KEY" in out


def test_a_clean_session_passes_and_says_what_it_searched(tmp_path: Path) -> None:
    run = session(tmp_path, CLEAN, "--harness-plant-secrets", "--capture=tee-sys")
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "harness: planted-secret check: 8 values searched" in out and "0 hit(s)" in out, out


@pytest.mark.parametrize("capture", ["--capture=fd", "--capture=sys"])
def test_planting_refuses_a_captured_console(tmp_path: Path, capture: str) -> None:
    run = session(tmp_path, CLEAN, "--harness-plant-secrets", capture)
    assert run.returncode == pytest.ExitCode.USAGE_ERROR
    assert "--capture=tee-sys" in run.stderr


class NoConsole:
    def text(self) -> bytes:
        return b""

    def stop(self) -> None:
        pass


def planted_session(tmp_path: Path) -> PlantedSession:
    planted = plant(COMPOSE, tmp_path / "scratch" / "stack")
    runs = tmp_path / "reports" / "runs"
    runs.mkdir(parents=True)
    return PlantedSession(tmp_path / "scratch", planted, NoConsole(), runs, frozenset(), {})  # type: ignore[arg-type]


def test_the_session_check_wants_outputs_and_a_stack_that_got_the_values(tmp_path: Path) -> None:
    session = planted_session(tmp_path)
    run = fake_run_dir(tmp_path / "reports")
    router_log = run / "logs" / "ai-router.log"
    stack = SimpleNamespace(
        target="twin", api_key="generated-router-key-0123456789", secrets=[],
        services={"ai-router": SimpleNamespace(name="ai-router", log_path=router_log)},
    )  # fmt: skip
    summary, problems = session.check(run_dir=run, stack=stack, junit=None, basetemp=None)
    assert "0 hit(s)" in summary
    assert problems == [
        f"the run wrote no report.md in {run}: nothing to search",
        f"the run wrote no report.html in {run}: nothing to search",
        "the stack was not given the planted router.env: its outputs prove nothing about secrets",
    ]


def test_the_session_check_finds_a_value_in_another_run_and_the_router_key(tmp_path: Path) -> None:
    session = planted_session(tmp_path)
    run = fake_run_dir(tmp_path / "reports")
    for name in ("report.md", "report.html"):
        (run / name).write_text("ok")
    other = tmp_path / "reports" / "runs" / "20260101T000001Z-attach"
    other.mkdir()
    (other / "record.json").write_text(session.planted.environ["HF_TOKEN"])
    key = "generated-router-key-0123456789"
    (run / "logs" / "ai-router.log").write_text(f"Authorization: Bearer {key}\n")
    stack = SimpleNamespace(
        target="twin", api_key=key, services={},
        secrets=[*session.planted.secrets_file.values(), *session.planted.router_env.values()],
    )  # fmt: skip
    _, problems = session.check(run_dir=run, stack=stack, junit=None, basetemp=None)
    assert problems == [
        f"planted secret written: {run / 'logs' / 'ai-router.log'}: the router key the harness "
        "generated",
        f"planted secret written: {other / 'record.json'}: environment HF_TOKEN",
    ]


def test_the_session_check_searches_junit_and_the_pytest_temp_folder(tmp_path: Path) -> None:
    """junit.xml and the child sessions' temp folder live outside every run directory; a value
    in either is a leak."""
    session = planted_session(tmp_path)
    run = fake_run_dir(tmp_path / "reports")
    for name in ("report.md", "report.html"):
        (run / name).write_text("ok")
    junit = tmp_path / "junit.xml"
    junit.write_text(f"<testcase><system-out>{session.planted.environ['HF_TOKEN']}</system-out>")
    child = tmp_path / "basetemp" / "test_child0" / "runpytest-0"
    child.mkdir(parents=True)
    openai = session.planted.environ["OPENAI_API_KEY"]
    (child / "stdout.txt").write_text(f"key=...{openai[-16:]}\n")  # a piece, as a repr cuts it
    stack = SimpleNamespace(target="twin", api_key="", services={}, secrets=None)
    summary, problems = session.check(
        run_dir=run, stack=stack, junit=junit, basetemp=tmp_path / "basetemp"
    )
    assert problems == [
        f"planted secret written: {junit}: environment HF_TOKEN",
        f"planted secret written: {child / 'stdout.txt'}: part of environment OPENAI_API_KEY",
    ]
    assert str(junit) in summary and str(tmp_path / "basetemp") in summary
