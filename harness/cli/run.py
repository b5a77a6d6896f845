"""`harness run`: the main job. Bring-up, the acceptance suite, the `steady` and `kv-pressure`
load profiles, then the report; all through one pytest session so that it writes one run
record, one junit.xml and one report."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from harness.cli.common import (
    DEFAULT_COMPOSE,
    MAIN_FILTER,
    MAIN_JOB,
    check_target_inputs,
    examples,
    newest_run,
    recorded_misfit,
)
from harness.cli.exit_codes import CANNOT_RUN, from_pytest
from harness.config_schema import TARGET_NAMES
from harness.report.run_dir import reports_root


def run_main_job(
    target: str,
    extra: list[str] | None = None,
    *,
    select: str = MAIN_FILTER,
    config: Path | None = None,
) -> tuple[int, Path | None]:
    """One pytest session over the main job; `select` is a -k expression ("" for all)."""
    import pytest

    if config is not None:
        # The session's plugin reads the settings itself: --config reaches it this way.
        os.environ["HARNESS_CONFIG"] = str(Path(config).resolve())

    before = set((reports_root() / "runs").glob("*"))
    args = [*MAIN_JOB, "--harness-target", target, "-p", "no:cacheprovider", *(extra or [])]
    if select:
        args += ["-k", select]
    code = int(pytest.main(args))
    return code, newest_run(target, before)


def refuse_second_stack(target: str, command: str) -> None:
    """A pytest session on twin, gpu or twin-docker brings up a stack of its own: refuse while
    `harness up` has one up, naming both. attach starts nothing."""
    from harness.errors import StackError
    from harness.stack import state

    doc = state.load()
    if doc is None or target == "attach":
        return
    why = recorded_misfit(doc, target, DEFAULT_COMPOSE, command)
    raise StackError(
        why
        or f"a {doc.get('target')} stack is up (run dir {doc.get('run_dir')}), and `harness "
        f"{command} --target {target}` brings up its own: `harness down` first, or --target "
        "attach to measure a running stack"
    )


def check_inputs(target: str, config: Path | None) -> None:
    """The settings ([slo.*] included) and what the target needs, checked before pytest starts:
    a run that stops on bad input leaves no run directory and no history line."""
    from harness.config import load_settings
    from harness.load.slo_table import check_slo_settings

    check_slo_settings(load_settings(config))
    check_target_inputs(target)


def cmd_run(ns: argparse.Namespace) -> int:
    check_inputs(ns.target, ns.config)
    refuse_second_stack(ns.target, "run")
    code, run_dir = run_main_job(ns.target, ns.pytest_args, config=ns.config)
    exit_code = from_pytest(code) if run_dir is not None else (from_pytest(code) or CANNOT_RUN)
    files = [
        str(run_dir / name)
        for name in ("report.md", "report.html", "record.json", "junit.xml")
        if run_dir is not None and (run_dir / name).exists()
    ]
    if getattr(ns, "json", False):
        doc = {
            "run_dir": str(run_dir) if run_dir else None,
            "exit_code": exit_code,
            "pytest_exit_code": code,
            "files": files,
        }
        print(json.dumps(doc, indent=2))
        return exit_code
    if run_dir is None:
        print("no run directory was written (the stack never came up)")
        return exit_code
    print(f"\nrun {run_dir.name}: pytest exit code {code}, harness exit code {exit_code}")
    for path in files:
        print(f"  {path}")
    print(run_verdict(run_dir))
    return exit_code


def run_verdict(run_dir: Path) -> str:
    """The run's one-line verdict from its record (PASSED, or FAILED: what, see report.md)."""
    from harness.errors import InputError
    from harness.report.schema import load_record
    from harness.report.verdict import verdict_line

    try:
        return verdict_line(load_record(run_dir), run_dir)
    except InputError as exc:
        return f"FAILED: the run record cannot be read ({exc}), see {run_dir}"


def cmd_nightly(ns: argparse.Namespace) -> int:
    """Acceptance and every load profile, the report, then the comparison's exit code."""
    from harness.cli.report import cmd_compare
    from harness.errors import InputError

    check_inputs(ns.target, ns.config)
    refuse_second_stack(ns.target, "nightly")
    code, run_dir = run_main_job(ns.target, ns.pytest_args, select="", config=ns.config)
    if run_dir is None:
        print("nightly: no run directory was written (the stack never came up)")
        return from_pytest(code) or CANNOT_RUN
    from harness.cli.sessions import add_sessions
    from harness.report.finalize import finalize_run

    # The router's session log joins the record, and so the report and the comparison.
    print(add_sessions(run_dir, ns.target, Path("infra/docker-compose.yml"), ns.config))
    finalize_run(run_dir)
    print(f"\nnightly run {run_dir.name}: pytest exit code {code}; comparing with the baseline")
    try:
        return cmd_compare(
            argparse.Namespace(run=str(run_dir), baseline=ns.baseline, json=False, config=ns.config)
        )
    except InputError as exc:
        print(f"nightly: nothing to compare with ({exc}); pin one with `harness baseline set`")
        return from_pytest(code)


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    run = sub.add_parser(
        "run", help="the main job: bring-up, acceptance, steady + kv-pressure",
        description=(
            "The main job (`make run`): bring the stack up, run the acceptance suite (routing "
            "accuracy, long conversations, fallbacks) and the steady and kv-pressure load "
            "profiles, and write one report: report.md, report.html, record.json and "
            "junit.xml under reports/runs/<UTC time>-<target>/. The last line says PASSED, or "
            "FAILED and what failed. Exit 1 when a test or an SLO failed."
        ),
        epilog=examples(
            "harness run                          # the CPU twin",
            "harness run --target gpu             # the real stack, on the GPU box",
            "harness run --target attach          # the running stack (HARNESS_ROUTER_API_KEY)",
            "harness run -- -x -k routing         # extra pytest arguments after --",
        ),
    )  # fmt: skip
    run.add_argument(
        "--target", default="twin", choices=TARGET_NAMES,
        help="twin (CPU processes), twin-docker (the GPU path with the twin's image), gpu "
        "(the compose file's containers on the GPU), attach (the running stack, URLs from "
        "[targets.attach] in harness.toml)",
    )  # fmt: skip
    run.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    run.add_argument("--json", action="store_true", help="the run's outcome as JSON")
    run.set_defaults(func=cmd_run)

    nightly = sub.add_parser(
        "nightly", help="acceptance + all load profiles, report, compare with the baseline",
        description=(
            "What the nightly timer runs (`make nightly`): the acceptance suite and every load "
            "profile against the running stack, the router's session log of the last 24 h, the "
            "report, then `harness compare` with the baseline. Exit 1 on a failure or a "
            "regression against the baseline ([compare] in harness.toml sets the tolerances)."
        ),
        epilog=examples(
            "harness nightly                        # the running stack (HARNESS_ROUTER_API_KEY)",
            "harness nightly --target twin          # a fresh CPU twin",
            "harness nightly --baseline last-green",
        ),
    )  # fmt: skip
    nightly.add_argument(
        "--target",
        default="attach",
        choices=("attach", "twin", "gpu", "twin-docker"),
        help="attach (default): the running stack; twin or gpu: bring up a fresh one",
    )
    nightly.add_argument(
        "--baseline", default=None, metavar="PATH|last-green",
        help="the run to compare with (default: reports/baseline.json, else last-green: the "
        "newest passed run of the same kind)",
    )  # fmt: skip
    nightly.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    nightly.set_defaults(func=cmd_nightly)
