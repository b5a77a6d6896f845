"""A run that stops on bad input (exit 2) leaves no run directory and no history line: `harness
load`, `harness run`, `harness nightly` and `harness up` check their input before a run directory
exists, and a bad input found during bring-up removes the directory again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "infra" / "docker-compose.yml"
CONFIG = ROOT / "harness.toml"


@pytest.fixture
def reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty reports root and state directory; no router key, no stack recorded as up."""
    monkeypatch.setenv("HARNESS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HARNESS_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.delenv("HARNESS_ROUTER_API_KEY", raising=False)
    monkeypatch.delenv("HARNESS_CONFIG", raising=False)
    return tmp_path / "reports"


def left_behind(reports: Path) -> list[str]:
    """What a run left under the reports root: run directories and the history file."""
    return sorted(
        str(p.relative_to(reports)) for p in [*reports.glob("runs/*"), *reports.glob("*.jsonl")]
    )


def no_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    """Starting a stack or a pytest session fails the test: bad input must stop earlier."""
    import harness.cli.run as cli_run
    import harness.stack.factory as factory

    monkeypatch.setattr(factory, "make_backend", lambda *a, **k: pytest.fail("a stack started"))
    monkeypatch.setattr(cli_run, "run_main_job", lambda *a, **k: pytest.fail("pytest started"))


@pytest.mark.parametrize(
    "argv, named",
    [
        (["load", "steady", "--target", "attach"], "HARNESS_ROUTER_API_KEY"),
        (["load", "steady", "--kv-tokens", "nosuch=1000"], "--kv-tokens"),
        (["run", "--target", "attach"], "HARNESS_ROUTER_API_KEY"),
        (["nightly", "--target", "attach"], "HARNESS_ROUTER_API_KEY"),
        (["up", "--target", "attach"], "HARNESS_ROUTER_API_KEY"),
        (["up", "--kv-tokens", "primary"], "--kv-tokens"),
    ],
)
def test_bad_input_exits_2_before_a_run_directory_exists(
    reports: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    named: str,
) -> None:
    no_stack(monkeypatch)
    extra = ["--config", str(CONFIG)]
    if argv[0] in ("load", "up"):
        extra += ["--compose", str(COMPOSE)]
    assert main([*argv, *extra]) == 2
    assert named in capsys.readouterr().err
    assert left_behind(reports) == []


@pytest.mark.parametrize("command", [["load", "steady"], ["run"]])
def test_an_unknown_slo_key_stops_the_run_before_it_starts(
    reports: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    no_stack(monkeypatch)
    config = tmp_path / "harness.toml"
    config.write_text("[slo.steady]\nmax_error_rat = 0.0\n")
    extra = ["--compose", str(COMPOSE)] if command[0] == "load" else []
    assert main([*command, "--config", str(config), *extra]) == 2
    assert "max_error_rat" in capsys.readouterr().err
    assert left_behind(reports) == []


class BadInputBackend:
    """A backend whose bring-up finds a bad input, as the attach backend does without a key."""

    target = "twin"

    def up(self) -> Any:
        raise ConfigError("a bad value found during bring-up")

    def down(self) -> None:
        pass


@pytest.mark.parametrize("command", [["load", "steady"], ["up"]])
def test_bad_input_found_during_bring_up_removes_the_run_directory(
    reports: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    import harness.stack.factory as factory

    made: list[Path] = []

    def make_backend(target: str, compose: Path, settings: Any, run_dir: Path, **k: Any) -> Any:
        made.append(run_dir)
        assert run_dir.is_dir()
        return BadInputBackend()

    monkeypatch.setattr(factory, "make_backend", make_backend)
    argv = [*command, "--target", "twin", "--config", str(CONFIG), "--compose", str(COMPOSE)]
    assert main(argv) == 2
    assert "a bad value found during bring-up" in capsys.readouterr().err
    assert made and not made[0].exists()
    assert left_behind(reports) == []
