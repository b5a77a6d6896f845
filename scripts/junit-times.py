#!/usr/bin/env python3
"""Where a test run's time went, from its junit.xml: per test directory, and the slowest tests.

    scripts/junit-times.py reports/runs/<run>/junit.xml [--top 15]

Prints Markdown tables (docs/ci-time.md is made of them). A test's time is pytest's
setup + call + teardown, so a session fixture's bring-up counts against the first test that
uses it. Only the standard library: it runs without the project installed.
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path


def split_classname(classname: str) -> tuple[str, str]:
    """("tests/unit", "test_vram.py::TestX") from "tests.unit.test_vram.TestX": the folder, and
    the module with any class."""
    parts = classname.split(".")
    at = next(
        (i for i, p in enumerate(parts) if p.startswith("test_") or p.endswith("_test")),
        len(parts) - 1,
    )
    return "/".join(parts[:at]) or ".", "::".join([parts[at] + ".py", *parts[at + 1 :]])


def test_dir(classname: str) -> str:
    return split_classname(classname)[0]


def outcome(case: ET.Element) -> str:
    for tag in ("failure", "error", "skipped"):
        if case.find(tag) is not None:
            return {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
    return "passed"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("junit", type=Path, nargs="+")
    ap.add_argument("--top", type=int, default=15, help="how many slowest tests (default 15)")
    ns = ap.parse_args(argv)
    cases: list[tuple[str, str, float, str]] = []
    suite_time = 0.0
    stamps = []
    for path in ns.junit:
        root = ET.parse(path).getroot()
        suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
        for suite in suites:
            suite_time += float(suite.get("time", 0))
            stamps.append(f"{suite.get('timestamp', '?')} on {suite.get('hostname', '?')}")
            for case in suite.iter("testcase"):
                cls = case.get("classname", "")
                name = case.get("name", "")
                if not name:  # no test: an entry pytest writes for the session itself
                    continue
                cases.append((cls, name, float(case.get("time", 0)), outcome(case)))
    total = sum(t for _, _, t, _ in cases)
    by_dir: dict[str, list[float]] = defaultdict(list)
    outcomes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for cls, _, t, result in cases:
        by_dir[test_dir(cls)].append(t)
        outcomes[test_dir(cls)][result] += 1
    out = sys.stdout
    out.write(f"Source: {', '.join(str(p) for p in ns.junit)} ({'; '.join(stamps)})\n\n")
    out.write(f"Session {suite_time / 60:.1f} min; tests {total / 60:.1f} min in all.\n\n")
    out.write("| directory | tests | outcomes | time | share |\n|---|---:|---|---:|---:|\n")
    for d, times in sorted(by_dir.items(), key=lambda kv: -sum(kv[1])):
        spent = sum(times)
        counts = ", ".join(f"{n} {k}" for k, n in sorted(outcomes[d].items()))
        share = 100 * spent / total if total else 0.0
        out.write(f"| {d} | {len(times)} | {counts} | {spent / 60:.1f} min | {share:.0f} % |\n")
    out.write(f"\n| the {ns.top} slowest tests | time | outcome |\n|---|---:|---|\n")
    for cls, name, t, result in sorted(cases, key=lambda c: -c[2])[: ns.top]:
        folder, module = split_classname(cls)
        out.write(f"| `{folder}/{module}::{name}` | {t:.0f} s | {result} |\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
