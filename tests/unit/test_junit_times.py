"""scripts/junit-times.py: per-folder and slowest-test tables from a junit.xml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "junit-times.py"
JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" time="400.0" timestamp="2026-01-01T00:00:00" hostname="ci">
<testcase classname="tests.unit.test_vram" name="test_a" time="2.0"/>
<testcase classname="tests.unit.test_vram.TestB" name="test_b" time="1.0"><skipped/></testcase>
<testcase classname="infra.ai-router.tests.test_router_http" name="test_c" time="3.0"/>
<testcase classname="tests.acceptance.test_contracts" name="test_d" time="294.0"/>
<testcase classname="tests.faults.test_faults_upstreams" name="test_e[x]" time="60.0">
<failure message="boom"/></testcase>
</testsuite></testsuites>
"""


def test_the_tables_add_up_by_folder_and_rank_the_slowest(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    junit.write_text(JUNIT)
    out = subprocess.run(
        [sys.executable, str(SCRIPT), str(junit), "--top", "2"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "Session 6.7 min; tests 6.0 min in all." in out
    assert "| tests/acceptance | 1 | 1 passed | 4.9 min | 82 % |" in out
    assert "| tests/unit | 2 | 1 passed, 1 skipped | 0.1 min | 1 % |" in out
    assert "| infra/ai-router/tests | 1 | 1 passed |" in out
    slowest = out.split("slowest tests")[1]
    assert slowest.index("test_contracts.py::test_d` | 294 s | passed") < slowest.index(
        "test_faults_upstreams.py::test_e[x]` | 60 s | failed"
    )
    assert "test_vram" not in slowest
