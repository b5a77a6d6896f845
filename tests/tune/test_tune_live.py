"""`harness tune` end to end on the twin: the change is checked, written, the twin restarted one
service at a time, and acceptance plus load run against it; a run that fails its SLO is rolled
back byte for byte and the twin comes back up with the previous file.

The tune stops the session's twin (registered as up, tests/tune/conftest.py), so this test runs
after every other test that uses the stack (`takes_the_stack`, ordered last by tests/conftest.py).
To keep it to one restart and one restore, the tune's run selects the primary's concurrency
burst (max-num-seqs + 2 streams: the engine must run max-num-seqs of them at once, no more) and
the steady profile, and compares with the session's own record so far.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest
from tune_cli import HARNESS, tune

from harness.stack.procs import process_identity

pytestmark = [pytest.mark.twin, pytest.mark.slow]

NEW_SEQS = 4
SELECT = "(test_requests_beyond_max_num_seqs_wait and primary) or test_chat_profiles and steady"
# Two bring-ups and a minute of tests; a loaded 2-core machine may take three times that.
TUNE_TIMEOUT_S = 1500


def junit_outcomes(path: Path) -> dict[str, str]:
    """Each test case's name: "passed", or the message of its failure, error or skip."""
    out = {}
    for case in ElementTree.parse(path).iter("testcase"):
        bad = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
        out[case.get("name", "")] = "passed" if bad is None else bad.get("message", bad.tag)
    return out


@pytest.mark.takes_the_stack
@pytest.mark.any_primary_pool
def test_a_tune_that_fails_its_slo_is_rolled_back_and_the_twin_comes_back(
    stack: Any, up_twin: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    compose, env = up_twin
    before = compose.read_bytes()
    old_seqs = stack.spec.primary.engine.max_num_seqs
    # An objective no run can meet: the run fails on an SLO, as one that a slower primary
    # broke would, and the verdict must be to roll back.
    env["HARNESS_SLO_STEADY_TWIN_LOCAL_P95_TTFT_S"] = "0.001"
    try:
        proc = tune(
            compose, env, f"vllm-primary.--max-num-seqs={NEW_SEQS}", "--rollback-on-fail",
            "--pytest-args", f"-k '{SELECT}'", "--baseline", str(stack.run_dir),
            timeout_s=TUNE_TIMEOUT_S,
        )  # fmt: skip
        out = proc.stdout + proc.stderr
        (tmp_path / "tune.log").write_text(out, encoding="utf-8")
        tail = out[-4000:]
        assert proc.returncode == 1, f"exit code {proc.returncode}, not 1 (rolled back):\n{tail}"
        # The session's own record so far stands in for the baseline: compare runs against it.
        baseline = f"baseline: {stack.run_dir / 'record.json'}"
        for step in ("wrote ", "restarting the twin stack", baseline, "verdict: roll back",
                     "restored from"):  # fmt: skip
            assert step in out, f"no {step!r} in the tune's output:\n{tail}"

        # The run was of the changed file: the primary ran with the new limit and used it.
        # Two run directories: the verification's, then the restore's bring-up.
        runs = sorted((tmp_path / "reports" / "runs").glob("*-twin*"))
        assert len(runs) == 2, f"tune's runs: {runs}\n{tail}"
        record = json.loads((runs[0] / "record.json").read_text())
        argv = record["stack"]["engine_args"]["vllm-primary"]
        assert argv[argv.index("--max-num-seqs") + 1] == str(NEW_SEQS), argv
        burst = record["acceptance"]["concurrency"]["primary"]["engines"]["vllm-primary"]
        assert burst["max_running"] <= NEW_SEQS, burst
        ran = re.findall(
            r"steady: vllm-primary ran at most (\d+) at once \(--max-num-seqs (\d+)\)", out
        )
        assert ran and all(int(n) <= NEW_SEQS and int(m) == NEW_SEQS for n, m in ran), (ran, tail)
        outcomes = junit_outcomes(runs[0] / "junit.xml")
        burst_test = "test_requests_beyond_max_num_seqs_wait[primary]"
        assert outcomes.get(burst_test) == "passed", (outcomes, tail)
        steady = outcomes.get("test_chat_profiles[steady]", "")
        assert re.search(r"steady on twin/local: p95 ttft_s [\d.]+ > 0.001", steady), (
            f"not failed on the SLO: {steady}\n{tail}"
        )

        # Rolled back byte for byte, and the twin is up again with the previous file.
        assert compose.read_bytes() == before, "the compose file is not what it was"
        state = json.loads((Path(env["HARNESS_STATE_DIR"]) / "stack.json").read_text())
        assert Path(state["compose"]) == compose
        for svc in state["services"]:
            r = httpx.get(svc["url"] + "/health", timeout=30)
            assert r.status_code == 200, f"{svc['name']} after the restore: {r.status_code}"
        primary = next(s for s in state["services"] if s["role"] == "primary")
        who = process_identity(primary["pid"])
        assert who is not None, "the restored primary is not running"
        cmd = list(who.cmdline)
        assert cmd[cmd.index("--max-num-seqs") + 1] == str(old_seqs), cmd
    finally:
        subprocess.run([HARNESS, "down"], env=env, timeout=300, capture_output=True)
