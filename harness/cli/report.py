"""`harness report | compare | baseline`: the report commands of the CLI.

RUN is a run directory (or its record.json) or a run id under `<reports>/runs/`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness.cli.common import examples


def cmd_report(ns: argparse.Namespace) -> int:
    from harness.report.finalize import finalize_run
    from harness.report.history import resolve_run

    run_dir = resolve_run(ns.run)
    written = finalize_run(run_dir, trend_runs=ns.history)
    print(written[0].read_text(), end="")
    for path in written:
        print(f"wrote {path}")
    if ns.screenshot:
        from harness.report.browser import screenshot

        png = run_dir / "report.png"
        errors = screenshot(run_dir / "report.html", png)
        print(f"wrote {png}")
        for e in errors:
            print(f"console error: {e}")
        return 1 if errors else 0
    return 0


def cmd_compare(ns: argparse.Namespace) -> int:
    from harness.config import load_settings
    from harness.report.comparable import refuse_unlike
    from harness.report.compare import compare, run_dirs_of, tolerances
    from harness.report.compare_render import render_table
    from harness.report.history import resolve_baseline, resolve_run, root_of
    from harness.report.schema import load_record

    run_dir = resolve_run(ns.run)
    current = load_record(run_dir / "record.json")
    base_path = resolve_baseline(
        ns.baseline, root_of(run_dir), current["run_id"], current["target"], current=current
    )
    baseline = load_record(base_path)
    # Unlike runs (another duration, users, target, shape or compose file) are refused: exit 2,
    # naming each.
    refuse_unlike(current, baseline, force=getattr(ns, "force", False))
    dirs = run_dirs_of(current, run_dir, baseline, base_path)
    result = compare(
        current, baseline, tolerances(load_settings(ns.config)), run_dirs=dirs,
        force=getattr(ns, "force", False),
    )  # fmt: skip
    if ns.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(f"baseline: {base_path}")
        print(render_table(result))
    return 1 if result.regression else 0


def cmd_baseline_set(ns: argparse.Namespace) -> int:
    from harness.report.history import resolve_run, root_of, set_baseline

    run_dir = resolve_run(ns.run)
    path = set_baseline(run_dir, root_of(run_dir))
    print(f"baseline is now {run_dir.name} ({path})")
    return 0


def cmd_baseline_show(ns: argparse.Namespace) -> int:
    from harness.report.history import BASELINE
    from harness.report.run_dir import reports_root
    from harness.report.schema import load_record

    path = reports_root() / BASELINE
    if not path.is_file():
        print(f"no baseline pinned ({path}); compare falls back to last-green")
        return 1
    doc = load_record(path)
    print(f"{doc['run_id']}: {doc['target']}, {doc['status']}, started {doc['started_at']}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser(
        "report", help="render report.md and report.html of a run",
        description=(
            "Render a run's report.md and report.html again from its record.json (a run writes "
            "them itself; this is for trend plots, or a record copied from another machine), "
            "and print report.md."
        ),
        epilog=examples(
            "harness report reports/runs/20250101T020000Z-twin",
            "harness report 20250101T020000Z-twin --history 14   # trends over 14 runs",
        ),
    )  # fmt: skip
    report.add_argument("run", help="run directory or run id under reports/runs")
    report.add_argument(
        "--history",
        type=int,
        default=0,
        metavar="N",
        help="add trend plots over the last N runs of the same target",
    )
    report.add_argument(
        "--screenshot",
        action="store_true",
        help="open the HTML in headless chromium, keep report.png, exit 1 on console errors",
    )
    report.set_defaults(func=cmd_report)

    comp = sub.add_parser(
        "compare", help="compare a run with the baseline; exit 1 on regression",
        description=(
            "Has the stack got worse? Compare a run with the baseline, metric by metric "
            "(latency percentiles, routing accuracy, KV capacity, fallbacks), each against its "
            "tolerance from [compare] in harness.toml. Only like with like: a load profile run "
            "with another duration, user count, target or shape, or a run brought up from "
            "another compose file (its sha256), is refused as not comparable, unless --force. "
            "Exit 1 on a regression."
        ),
        epilog=examples(
            "harness compare reports/runs/20250101T020000Z-twin",
            "harness compare 20250101T020000Z-twin --baseline last-green",
            "harness compare RUN --json          # every row with its raw values",
        ),
    )  # fmt: skip
    comp.add_argument("run", help="run directory or run id under reports/runs")
    comp.add_argument(
        "--baseline",
        default=None,
        metavar="PATH|last-green",
        help="a record.json or run directory, or last-green: the newest passed run of the same "
        "kind (target, compose file, load profiles and their settings) "
        "(default: reports/baseline.json, else last-green)",
    )
    comp.add_argument("--json", action="store_true", help="rows as JSON")
    comp.add_argument(
        "--force", action="store_true",
        help="compare a load profile that ran with other settings (duration, users, target, "
        "shape) than the baseline's, or a run of another compose file; without it such a run "
        "is refused (exit 2), with it each row says what differs",
    )  # fmt: skip
    comp.set_defaults(func=cmd_compare)

    base = sub.add_parser(
        "baseline", help="pin the run that compare measures against",
        description=(
            "The baseline is the run `harness compare` and `harness nightly` measure against: "
            "reports/baseline.json, a copy of a good run's record. Without one, compare uses "
            "last-green, the newest passed run of the same kind."
        ),
        epilog=examples(
            "harness baseline set reports/runs/20250101T020000Z-gpu",
            "harness baseline show",
        ),
    )  # fmt: skip
    base_sub = base.add_subparsers(dest="baseline_command", required=True)
    set_ = base_sub.add_parser(
        "set", help="copy a run's record to reports/baseline.json",
        description="Pin a run as the baseline: its record.json is copied to "
        "reports/baseline.json.",
        epilog=examples("harness baseline set reports/runs/20250101T020000Z-gpu"),
    )  # fmt: skip
    set_.add_argument("run", type=Path, help="run directory or run id under reports/runs")
    set_.set_defaults(func=cmd_baseline_set)
    show = base_sub.add_parser(
        "show", help="which run is the baseline",
        description="Say which run is pinned as the baseline; exit 1 when none is.",
        epilog=examples("harness baseline show"),
    )  # fmt: skip
    show.set_defaults(func=cmd_baseline_show)
