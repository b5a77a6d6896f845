"""What several subcommands share: option types, the main job's pytest selection, the stack
`harness up` recorded and whether a command may use it, and the line naming the config file.

Subcommand modules import this one and never each other's internals, so that no two of them
import each other."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import FrameType
from typing import Any

from harness.cli.exit_codes import EPILOG
from harness.report.run_dir import reports_root

DEFAULT_COMPOSE = Path("infra/docker-compose.yml")

# The main job of `harness run` (acceptance, steady, kv-pressure), shared with `harness tune`.
MAIN_JOB = ["tests/acceptance", "tests/load/test_profiles.py"]
MAIN_FILTER = "not test_chat_profiles or steady"


def examples(*lines: str) -> str:
    """A command's help epilog: its examples (`command  # what it does`), then the exit codes."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines) + "\n\n" + EPILOG


def raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def seconds(text: str) -> float:
    """A positive duration such as 60s or 2m."""
    from harness.compose.parse import parse_duration

    try:
        value = parse_duration(text, where="--duration", key="duration")
    except Exception:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 60s or 2m") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a duration must be above 0, e.g. 60s")
    return float(value)


def positive_int(text: str) -> int:
    """A count of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be 1 or more")
    return value


def check_target_inputs(target: str) -> None:
    """What a target needs from the environment, checked before a run directory exists: attach
    reaches the owner's stack with the owner's key (HARNESS_ROUTER_API_KEY), read where the
    attach backend reads it."""
    import os

    from harness.errors import ConfigError

    if target == "attach" and not os.environ.get("HARNESS_ROUTER_API_KEY"):
        raise ConfigError(
            "HARNESS_ROUTER_API_KEY is not set: --target attach needs the running router's key "
            "(e.g. one of ROUTER_API_KEYS in infra/.secrets)"
        )


def newest_run(target: str, before: set[Path]) -> Path | None:
    runs = sorted(p for p in (reports_root() / "runs").glob(f"*-{target}*") if p not in before)
    return runs[-1] if runs else None


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """`--config FILE` after the subcommand too; SUPPRESS keeps the value given before it."""
    parser.add_argument(
        "--config", type=Path, default=argparse.SUPPRESS, metavar="FILE",
        help="harness.toml to use (default: the nearest harness.toml from the current "
        "directory upwards, else built-in defaults)",
    )  # fmt: skip


def config_line(path: Path | None) -> str:
    """Which settings are in force, in one line."""
    from harness.config import CONFIG_NAME

    if path is not None:
        return f"config: {path}"
    return (
        f"config: no {CONFIG_NAME} found (searched {Path.cwd()} upwards); using built-in "
        "defaults (run from the repository or give --config FILE)"
    )


# -- the stack `harness up` recorded ----------------------------------------------------------


def same_file(a: str | Path | None, b: str | Path | None) -> bool:
    if a is None or b is None:
        return False
    return Path(a).resolve() == Path(b).resolve()


def recorded_misfit(
    doc: dict[str, Any], target: str | None, compose: Path, command: str
) -> str | None:
    """Why the stack `harness up` recorded (`doc`) cannot serve `command` with this target and
    compose file, naming both and what to do; None when it fits. `target` None: the command
    takes the recorded stack's."""
    up_target, up_compose = doc.get("target"), doc.get("compose")
    where = f"a {up_target} stack is up ({up_compose}, run dir {doc.get('run_dir')})"
    if target is not None and target != up_target:
        return (
            f"{where}, but `harness {command}` asks for --target {target}; a second stack is "
            f"not started: `harness down` first, or --target {up_target} to use the one up"
        )
    if not same_file(up_compose, compose):
        return (
            f"{where}, but `harness {command}` asks for {compose}; a second stack is not "
            f"started: `harness down` first, or --compose {up_compose} to use the one up"
        )
    return None


def non_negative_int(text: str) -> int:
    """A count of 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be 0 or more")
    return value


def positive_float(text: str) -> float:
    """A number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be above 0")
    return value
