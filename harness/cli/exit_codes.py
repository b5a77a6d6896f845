"""The exit codes of every `harness` command, in one table (also printed by `--help`)."""

from __future__ import annotations

import pytest

OK = 0
FAILED = 1  # a check, a test, an SLO or a comparison failed
BAD_INPUT = 2  # a file, field, flag, option or variable is wrong; the message names it
CANNOT_RUN = 3  # the stack or this machine could not do what was asked
INTERRUPTED = 130  # Ctrl-C, SIGTERM or SIGHUP

TABLE = {
    OK: "success",
    FAILED: "a check, test, SLO or comparison failed",
    BAD_INPUT: "bad input: the message names the file, field, flag or variable",
    CANNOT_RUN: "the stack or this machine could not do what was asked",
    INTERRUPTED: "interrupted (Ctrl-C, SIGTERM, SIGHUP)",
}

# The one wording of the table, at the end of every command's --help.
EPILOG = "exit codes (every command):\n" + "\n".join(
    f"  {code:<4} {what}" for code, what in TABLE.items()
)

# pytest's own codes collide with ours (its 2 is "interrupted", its 3 "internal error").
_FROM_PYTEST = {
    pytest.ExitCode.OK: OK,
    pytest.ExitCode.TESTS_FAILED: FAILED,
    pytest.ExitCode.INTERRUPTED: INTERRUPTED,
    pytest.ExitCode.INTERNAL_ERROR: CANNOT_RUN,
    pytest.ExitCode.USAGE_ERROR: BAD_INPUT,
    pytest.ExitCode.NO_TESTS_COLLECTED: BAD_INPUT,
}


def from_pytest(code: int) -> int:
    """The harness exit code for a pytest session's outcome."""
    return _FROM_PYTEST.get(pytest.ExitCode(code), CANNOT_RUN) if code in range(6) else CANNOT_RUN
