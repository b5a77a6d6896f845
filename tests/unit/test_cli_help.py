"""The harness command explains itself: descriptions, help with defaults and examples,
--version, one table of exit codes, pytest's outcomes mapped onto it."""

from __future__ import annotations

import argparse

import pytest

from harness import __version__
from harness.cli import build_parser, main
from harness.cli.exit_codes import EPILOG, TABLE, from_pytest


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    out = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                out[name] = child
                out.update({f"{name} {k}": v for k, v in subcommands(child).items()})
    return out


def test_every_subcommand_has_a_description_and_every_option_help() -> None:
    commands = subcommands(build_parser())
    assert {"check", "up", "down", "load", "run", "compare", "tune", "prefetch"} <= set(commands)
    for name, parser in commands.items():
        assert parser.description, f"harness {name} has no description"
        for action in parser._actions:
            if not isinstance(action, argparse._HelpAction):
                what = action.option_strings or [action.dest]
                assert action.help, f"harness {name} {what[0]} has no help text"


def test_help_shows_defaults_and_the_exit_codes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "240")
    with pytest.raises(SystemExit) as done:
        main(["check", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "(default: infra/docker-compose.yml)" in out
    assert "exit codes (every command):\n  0    success\n  1    " in out
    assert "130  interrupted" in out


def test_every_command_has_examples_and_the_one_exit_code_table(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    commands = subcommands(build_parser())
    for name in ["", *commands]:
        with pytest.raises(SystemExit) as done:
            main([*name.split(), "--help"])
        assert done.value.code == 0
        out = capsys.readouterr().out
        where = f"harness {name} --help".replace("  ", " ")
        examples = out.partition("\nexamples:\n")[2]
        assert examples.startswith("  harness ") or examples.startswith("  eval "), where
        assert out.count("exit codes") == 1 and EPILOG in out, where
        assert "Exit codes" not in out, where  # no second, differently worded list
        assert "(default: [])" not in out and "(default: )" not in out, where
        assert f"usage: harness {name}".rstrip() in out, where  # the full command, not its leaf


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"harness {__version__}"


def test_pytest_outcomes_map_onto_the_harness_codes() -> None:
    assert [from_pytest(c) for c in range(6)] == [0, 1, 130, 3, 2, 2]
    assert from_pytest(99) == 3
    assert set(TABLE) == {0, 1, 2, 3, 130}
