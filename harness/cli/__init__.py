"""The `harness` command: acceptance and load tests for a self-hosted vLLM routing stack.

Each subcommand parses its options, calls the library and prints; the library raises, and only
this package turns its errors into the exit codes of exit_codes.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from harness import __version__
from harness.cli.common import DEFAULT_COMPOSE, add_config_option, config_line, examples
from harness.cli.exit_codes import BAD_INPUT, CANNOT_RUN, EPILOG, INTERRUPTED
from harness.errors import CapabilityError, HarnessError, InputError

DESCRIPTION = """\
Acceptance and load tests for a self-hosted vLLM routing stack: two vLLM engines (a small
classifier and a large reasoning model) sharing one GPU, and an ai-router that sends each chat
to the local model or to xAI search.

Start with `harness check` (no GPU needed), then `harness run` (the CPU twin, or --target gpu
on the GPU box). Settings come from harness.toml (the nearest one from the current directory
upwards, or --config FILE) and HARNESS_* variables. `harness COMMAND --help` explains each
command, with examples."""

TOP_EXAMPLES = (
    "harness check                        # preflight of infra/docker-compose.yml, no GPU",
    "harness run                          # the main job on the CPU twin, then the report",
    "harness up && harness load steady    # keep a twin up and measure it",
    "harness compare reports/runs/RUN_ID  # the run against the baseline",
)


def _cmd_check(ns: argparse.Namespace) -> int:
    from harness.config import load_settings
    from harness.load.slo_table import check_slo_settings
    from harness.routing.headroom import for_spec
    from harness.telemetry.nvml import total_memory_or_none
    from harness.vram.check import run_check
    from harness.vram.render import render_markdown_table, render_text

    overrides = {"check.gpu_memory": ns.gpu_memory} if ns.gpu_memory else {}
    settings = load_settings(ns.config, overrides)
    check_slo_settings(settings)
    nvml_total = None if ns.gpu_memory else total_memory_or_none()
    result = run_check(ns.compose, settings, nvml_total=nvml_total, headroom=for_spec)
    if ns.against:
        from harness.cli.tune import check_against

        return check_against(ns, result)
    if ns.json:
        print(json.dumps(result.to_dict(), indent=2))
    elif ns.markdown:
        print(render_markdown_table(result))
    else:
        print(render_text(result))
    return 0 if result.ok else 1


def _cmd_order(ns: argparse.Namespace) -> int:
    from harness.compose import load_stack

    spec = load_stack(ns.compose)
    names = list(reversed(spec.start_order)) if ns.reverse else list(spec.start_order)
    for name in names:
        svc = spec.services[name]
        timeout = int(svc.healthcheck.startup_budget_s) if svc.healthcheck else 60
        print(name, timeout, "engine" if svc.is_engine else "service")
    return 0


# Help for options that several subcommands share, where a subcommand gave none.
COMMON_HELP = {
    "--compose": "the stack's compose file",
    "--target": "where the stack comes from: twin (local processes), twin-docker (the emulated "
    "GPU), gpu (the real stack's containers), attach (the running stack)",
    "--json": "machine-readable output",
    "--users": "locust users (default: the profile's own)",
    "--kv-tokens": "a KV capacity for one engine of the twin, e.g. primary=49152 or primary=1.5x",
    "--baseline": "the run to compare with: a path, a run id, or last-green",
    "profile": "the load profile",
    "--cache-dir": "where the twin's models are built and kept",
    "--force": "rebuild even when the inputs are unchanged",
}


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; each option's default in its help, where it has one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "%(default)" in text or "default" in text or default in (None, False, argparse.SUPPRESS):
            return text
        if isinstance(default, list | str) and not default:
            return text  # an empty list or string is no default worth showing
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            text += " (default: %(default)s)"
        return text


def _explain(sub: argparse._SubParsersAction) -> None:
    """Every subcommand gets a description, every option a help text showing its default."""
    summaries = {a.dest: a.help for a in sub._choices_actions}
    for name, parser in sub.choices.items():
        parser.formatter_class = _Formatter
        if EPILOG not in (parser.epilog or ""):
            parser.epilog = f"{parser.epilog}\n\n{EPILOG}" if parser.epilog else EPILOG
        if not parser.description:
            summary = summaries.get(name) or name
            parser.description = f"{parser.prog}: {summary}."
        for action in parser._actions:
            if action.help is None and not isinstance(action, argparse._HelpAction):
                keys = [*action.option_strings, action.dest]
                action.help = next((COMMON_HELP[k] for k in keys if k in COMMON_HELP), None)
                if action.help is None and isinstance(action, argparse._SubParsersAction):
                    action.help = "one of: " + ", ".join(action.choices or ())
        children = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        for child in children:
            _explain(child)
        if not children and "--config" not in parser._option_string_actions:
            # `harness COMMAND --config FILE` as well as `harness --config FILE COMMAND`.
            add_config_option(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness",
        description=DESCRIPTION,
        epilog=examples(*TOP_EXAMPLES),
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    parser.add_argument(
        "--config", type=Path, default=None, metavar="FILE",
        help="harness.toml to use (default: HARNESS_CONFIG, else the nearest harness.toml from "
        "the current directory upwards, else built-in defaults)",
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser(
        "check", help="preflight: VRAM math and rules, no GPU needed",
        description=(
            "Will this compose file fit the card and start? For each engine: its memory budget, "
            "weights, KV pool and how many full-length requests that pool holds, then every "
            "rule finding (errors first), each with a fix. Needs no GPU and answers in about a "
            "second: run it after every flag change, before a bring-up. Exit 1 on an error "
            "finding (warnings alone exit 0)."
        ),
        epilog=examples(
            "harness check                                # the stock compose file",
            "harness check --gpu-memory 80GiB             # the same stack on an 80 GiB card",
            "harness check --compose copy.yml --json      # another file, machine-readable",
            "harness check --against HEAD~1               # and what changed since a git ref",
        ),
    )  # fmt: skip
    check.add_argument("--compose", type=Path, default=DEFAULT_COMPOSE)
    check.add_argument(
        "--gpu-memory", default=None,
        help="total GPU memory, e.g. 96GiB, 80GB (default: the GPU NVML sees, else [check] "
        "gpu_memory in harness.toml)",
    )  # fmt: skip
    check.add_argument(
        "--against", default=None, metavar="REF",
        help="also list every item changed since REF (a git ref or a file), each a safe knob or "
        "for human review; exit 1 on an unreviewed human-review change",
    )  # fmt: skip
    check.add_argument(
        "--reviewed", action="store_true", help="--against: the human-review changes are reviewed"
    )
    fmt = check.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="machine-readable output")
    fmt.add_argument("--markdown", action="store_true", help="the budget table as Markdown")
    check.set_defaults(func=_cmd_check)

    order = sub.add_parser(
        "order", help="start order with health timeouts, one service a line",
        description=(
            "The order in which a bring-up starts the services (from the compose file's "
            "depends_on), one line each: the service, its health budget in seconds, and whether "
            "it is an engine. --reverse gives the stop order."
        ),
        epilog=examples("harness order", "harness order --reverse   # the stop order"),
    )  # fmt: skip
    order.add_argument("--compose", type=Path, default=DEFAULT_COMPOSE)
    order.add_argument("--reverse", action="store_true", help="stop order")
    order.set_defaults(func=_cmd_order)

    from harness.cli import capacity as cli_capacity
    from harness.cli import doctor as cli_doctor
    from harness.cli import envelope as cli_envelope
    from harness.cli import report as cli_report
    from harness.cli import run as cli_run
    from harness.cli import stack as cli_stack
    from harness.cli import tune as cli_tune
    from harness.cli import vram as cli_vram

    cli_stack.add_parsers(sub)
    cli_run.add_parsers(sub)
    cli_capacity.add_parsers(sub)
    cli_envelope.add_parsers(sub)
    cli_report.add_parsers(sub)
    cli_tune.add_parsers(sub)
    cli_vram.add_parsers(sub)
    cli_doctor.add_parsers(sub)
    _explain(sub)
    return parser


# The subcommands that read harness.toml: each says which file is in force.
READS_CONFIG = {
    "check", "up", "load", "capacity", "envelope", "run", "nightly", "compare", "tune",
    "sessions", "vram",
}  # fmt: skip


def _settle_config(ns: argparse.Namespace) -> None:
    """The config file in force (--config, HARNESS_CONFIG, else the nearest harness.toml from
    the current directory upwards), said in one line; the default compose file is
    taken from beside it when the current directory has none (a run from a subdirectory)."""
    from harness.config import find_config

    path = ns.config or find_config()
    if ns.command in READS_CONFIG:
        # The output's first line; with --json, stdout is the document and the line goes to
        # stderr.
        print(config_line(path), file=sys.stderr if getattr(ns, "json", False) else sys.stdout)
    compose = getattr(ns, "compose", None)
    if path is not None and compose == DEFAULT_COMPOSE and not compose.exists():
        beside = Path(path).resolve().parent / DEFAULT_COMPOSE
        if beside.is_file():
            ns.compose = beside


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    try:
        _settle_config(ns)
        return int(ns.func(ns))
    except InputError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return BAD_INPUT
    except CapabilityError as exc:
        print(f"harness: cannot run here: {exc}", file=sys.stderr)
        return CANNOT_RUN
    except HarnessError as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return CANNOT_RUN
    except KeyboardInterrupt:
        print("harness: interrupted", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
