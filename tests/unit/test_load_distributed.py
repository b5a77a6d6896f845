"""locust's distributed mode against the no-op streaming server: a master and its workers, on
this machine or joining from another; every request the server answered is in the master's
requests.jsonl, once, named by the worker that sent it."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import pytest

from harness.load.processes import Distributed, run_locust, run_worker
from harness.load.records import read_records, sort_records
from harness.load.settings import LoadSettings
from harness.stack.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


def settings_for(records: Path, url: str) -> LoadSettings:
    return LoadSettings(
        records=records, api_key="", classifier_url="", classifier_model="",
        max_model_len=32768, max_num_seqs=3, max_tokens=4, context_fraction=0.0,
        chars_per_token=3.0, users=None, duration_s=None, pace_s=0.0, seed=1,
        direct_url=url, direct_model="noop",
    )  # fmt: skip


LOCUSTFILE = ROOT / "benchmarks" / "locustfile_direct.py"


def assert_every_answer_recorded_once(records: list, server: str) -> None:
    answered = httpx.get(server + "/stats", timeout=30).json()
    ids = [r.request_id for r in records]
    assert records and all(r.ok for r in records), {r.error for r in records}
    assert len(set(ids)) == len(ids), "a record was written twice"
    # Every request the server answered was recorded, whichever worker sent it.
    assert set(answered) == set(ids), f"{len(set(answered) - set(ids))} answered, not recorded"


def test_two_workers_records_reach_the_master_once_each(noop_server: str, tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "requests.jsonl", noop_server)
    run_locust(
        LOCUSTFILE, noop_server, settings, tmp_path, cwd=ROOT, timeout_s=180, users=4,
        run_time_s=4, distributed=Distributed(processes=2),
    )  # fmt: skip
    records = read_records(settings.records)
    assert_every_answer_recorded_once(records, noop_server)
    # Both workers ran users (locust spreads 4 users over 2), and each record names its worker.
    assert {r.worker for r in records} == {"1", "2"}
    assert len(sorted(tmp_path.glob("locust-worker-*.out"))) == 2
    stats = json.loads((tmp_path / "locust.json").read_text())
    assert sum(e["num_requests"] for e in stats) == len(records)
    starts = [r.actual_start for r in records]
    assert starts == sorted(starts), "requests.jsonl is not in start order"


def test_a_worker_from_another_machine_joins_and_its_records_reach_the_master(
    noop_server: str, tmp_path: Path
) -> None:
    """`harness load PROFILE --worker HOST:PORT` runs run_worker; here it joins from this
    machine, with a folder of its own, as it would from another."""
    master = ("127.0.0.1", free_port())
    elsewhere = tmp_path / "elsewhere"
    codes: list[int] = []

    def join() -> None:
        worker_settings = settings_for(elsewhere / "requests.jsonl", noop_server)
        codes.append(
            run_worker(LOCUSTFILE, worker_settings, master, elsewhere, cwd=ROOT, name="elsewhere")
        )

    joiner = threading.Thread(target=join)
    joiner.start()
    settings = settings_for(tmp_path / "requests.jsonl", noop_server)
    try:
        run_locust(
            LOCUSTFILE, noop_server, settings, tmp_path, cwd=ROOT, timeout_s=180, users=4,
            run_time_s=4, distributed=Distributed(processes=1, remote=1, bind=master),
        )  # fmt: skip
    finally:
        joiner.join(timeout=90)
    assert codes == [0], f"the joining worker exited with {codes}"
    records = read_records(settings.records)
    assert_every_answer_recorded_once(records, noop_server)
    assert {r.worker for r in records} == {"1", "elsewhere"}
    # The joining worker wrote nothing where it ran: its records went to the master.
    assert not list(elsewhere.glob("*.jsonl"))


def test_sort_orders_the_masters_file_by_start(tmp_path: Path) -> None:
    main = tmp_path / "requests.jsonl"
    main.write_text("".join(json.dumps({"actual_start": t}) + "\n" for t in (3.0, 0.5, 2.0, 1.0)))
    assert sort_records(main) == 4
    starts = [json.loads(ln)["actual_start"] for ln in main.read_text().splitlines()]
    assert starts == [0.5, 1.0, 2.0, 3.0]
    assert sort_records(tmp_path / "missing.jsonl") == 0


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["--workers", "2"], "--master HOST:PORT"),
        (["--worker", "127.0.0.1:5557"], "--target attach"),
        (["--target", "attach", "--worker", "127.0.0.1:5557", "--processes", "2"], "--processes"),
        (["--master", "5557"], "'5557' is not HOST:PORT"),
    ],
)
def test_distributed_flags_that_cannot_work_exit_2_naming_the_flag(
    argv: list[str], names: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli import main

    with pytest.raises(SystemExit) as exc:
        code = main(["load", "steady", *argv])
        raise SystemExit(code)
    assert exc.value.code == 2
    assert names in capsys.readouterr().err
