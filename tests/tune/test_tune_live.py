"""`harness tune --judge capacity` end to end on the twin: capacity is measured on the session's
twin, the change is checked, written, the twin restarted one service at a time, acceptance runs
against it and capacity is measured again; the decision follows the two capacities, and a
change rolled back is restored byte for byte with the twin back up on the previous file.

The change takes the primary from max-num-seqs 3 to 1: steady's local chats then queue for one
slot. Each search has 3 short probes, none left for a repeat, so no end of either interval is
confirmed by a second trial and the verdict must be "within the noise": roll back (the rules
for raised and lowered are unit-tested in tests/unit/test_tune_capacity.py).

The tune stops the session's twin (registered as up, tests/tune/conftest.py), so this test runs
after every other test that uses the stack (`takes_the_stack`, ordered last by tests/conftest.py).
To keep it to one restart and one restore, the tune's run selects the primary's concurrency
burst (max-num-seqs + 2 streams: the engine must run max-num-seqs of them at once, no more), and
each capacity search is short (3 probes of 8 s).
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

NEW_SEQS = 1
SELECT = "test_requests_beyond_max_num_seqs_wait and primary"
# Two bring-ups, two capacity searches and the burst; a loaded 2-core machine may take three
# times that.
TUNE_TIMEOUT_S = 1500
# "capacity before the change: 4.2 req/s (interval 4-8, primary slots; 1 and 1 trial(s) at its
# ends)"; "open": no upper end.
CAPACITY = re.compile(
    r"capacity (before|after) the change: +([\d.]+) req/s \(interval ([\d.]+)-([\d.]+|open),"
)


def junit_outcomes(path: Path) -> dict[str, str]:
    """Each test case's name: "passed", or the message of its failure, error or skip."""
    out = {}
    for case in ElementTree.parse(path).iter("testcase"):
        bad = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
        out[case.get("name", "")] = "passed" if bad is None else bad.get("message", bad.tag)
    return out


def capacities(out: str) -> dict[str, tuple[float, float, float | None]]:
    """The tune's printed capacity before and after: (capacity, lower, upper or None)."""
    found = {
        m[1]: (float(m[2]), float(m[3]), None if m[4] == "open" else float(m[4]))
        for m in CAPACITY.finditer(out)
    }
    assert set(found) == {"before", "after"}, f"no capacity lines in the output:\n{out[-4000:]}"
    return found


@pytest.mark.takes_the_stack
@pytest.mark.any_primary_pool
def test_a_tune_judged_by_capacity_follows_the_capacities(
    stack: Any, up_twin: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    compose, env = up_twin
    before = compose.read_bytes()
    old_seqs = stack.spec.primary.engine.max_num_seqs
    # The session's twin is registered without its key (no file may hold it): the capacity run
    # on it reads the key where attach does.
    env["HARNESS_ROUTER_API_KEY"] = stack.api_key
    try:
        proc = tune(
            compose, env, f"vllm-primary.--max-num-seqs={NEW_SEQS}", "--rollback-on-fail",
            "--judge", "capacity", "--capacity-probes", "3", "--capacity-probe", "8s",
            "--pytest-args", f"-k '{SELECT}'", timeout_s=TUNE_TIMEOUT_S,
        )  # fmt: skip
        out = proc.stdout + proc.stderr
        (tmp_path / "tune.log").write_text(out, encoding="utf-8")
        tail = out[-4000:]
        for step in (
            "tune: measuring capacity before the change",
            "wrote ",
            "restarting the twin stack",
            "tune: measuring capacity after the change",
        ):
            assert step in out, f"no {step!r} in the tune's output:\n{tail}"  # fmt: skip
        assert out.index("measuring capacity before") < out.index("wrote "), tail

        # The decision follows the capacities it printed. Three probes leave none for a
        # repeat, so neither end of either interval was confirmed by a second trial: however
        # far apart the two answers, the tune cannot call them beyond the noise, and rolls back.
        caps = capacities(out)
        (_, lb, _), (ca, _, _) = caps["before"], caps["after"]
        moved = re.search(r"^capacity (raised|lowered|within the noise)$", out, re.M)
        assert moved and moved[1] == "within the noise", f"{caps}:\n{tail}"
        assert proc.returncode == 1, f"exit code {proc.returncode}, not 1 (rolled back):\n{tail}"
        assert "verdict: roll back" in out and "restored from" in out, tail

        # The verification ran the changed file: the primary ran with the new limit.
        runs = sorted(p for p in (tmp_path / "reports" / "runs").glob("*-twin") if p.is_dir())
        capacity_runs = sorted((tmp_path / "reports" / "runs").glob("*-twin-capacity"))
        assert len(capacity_runs) == 2, f"capacity runs: {capacity_runs}\n{tail}"
        # The verification's run, and the restore's bring-up after the rollback.
        assert len(runs) == 2, f"tune's runs: {runs}\n{tail}"
        record = json.loads((runs[0] / "record.json").read_text())
        argv = record["stack"]["engine_args"]["vllm-primary"]
        assert argv[argv.index("--max-num-seqs") + 1] == str(NEW_SEQS), argv
        burst = record["acceptance"]["concurrency"]["primary"]["engines"]["vllm-primary"]
        assert burst["max_running"] <= NEW_SEQS, burst
        outcomes = junit_outcomes(runs[0] / "junit.xml")
        burst_test = "test_requests_beyond_max_num_seqs_wait[primary]"
        assert outcomes.get(burst_test) == "passed", (outcomes, tail)
        judged = record["tune"]["capacity"]
        assert judged["keep"] is False and judged["acceptance_passed"] is True, judged
        assert judged["change"] == "within the noise", judged
        # The output prints three significant figures; the record keeps the full float.
        printed = (
            f"{judged['before']['interval_rps'][0]:.3g}",
            f"{judged['after']['capacity_rps']:.3g}",
        )
        assert printed == (f"{lb:.3g}", f"{ca:.3g}"), (judged, caps)

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
