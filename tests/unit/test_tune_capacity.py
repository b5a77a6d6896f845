"""`harness tune --judge capacity`: the verdict follows the capacities measured before and
after the change (harness.tune_capacity), capacity before is measured on the file as it was,
before anything is written, and the verdict lands in the verification run's record."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from test_tune import make

from harness.cli.tune_judge import CapacityJudge
from harness.tune import Judgement
from harness.tune_capacity import LOWERED, RAISED, SAME, Capacity, capacity_judgement, change


def cap(lo: float, hi: float | None, rps: float | None = None, trials: int = 2) -> Capacity:
    """A capacity whose interval ends were each probed `trials` times."""
    return Capacity(rps if rps is not None else lo, lo, hi, "primary slots", None, trials, trials)


@pytest.mark.parametrize(
    "before, after, moved",
    [
        (cap(2, 4), cap(4, 8), RAISED),  # 4 req/s failed before and holds now
        (cap(4, 8), cap(2, 4), LOWERED),  # 4 req/s held before and fails now
        (cap(4, 8), cap(4.5, 8), SAME),  # the intervals overlap
        (cap(4, None), cap(8, None), SAME),  # no rate failed before: no upper end to beat
        (cap(4, 8), cap(1, None), SAME),  # nothing failed after: cannot be lower
        (cap(4, 8), cap(8, None), RAISED),
        # Apart, but a deciding rate was probed once: a transient can do that.
        (cap(1, 1.41, trials=1), cap(2, 4), SAME),
        (cap(4, 8), cap(1, 2, trials=1), SAME),
    ],
)
def test_the_change_is_read_from_the_intervals(
    before: Capacity, after: Capacity, moved: str
) -> None:
    assert change(before, after) == moved


@pytest.mark.parametrize(
    "passed, after, keep, reason",
    [
        (True, cap(4, 8), True, "rose beyond the noise: keep"),
        (False, cap(4, 8), False, "acceptance failed on the changed stack"),
        (True, cap(1, 2), False, "fell beyond the noise: roll back"),
        (True, cap(2.2, 4), False, "moved within the noise"),
    ],
)
def test_kept_only_when_acceptance_passed_and_the_capacity_rose(
    passed: bool, after: Capacity, keep: bool, reason: str
) -> None:
    j = capacity_judgement(passed, cap(2, 4), after)
    assert j.keep is keep
    assert reason in j.lines[-1]
    assert j.lines[0].startswith("capacity before the change: 2 req/s (interval 2-4")


class FakeCapacity(CapacityJudge):
    """Answers from a list instead of `harness capacity`, recording what the file said then."""

    def __init__(self, compose: Path, answers: list[Capacity]) -> None:
        super().__init__(compose, "twin")
        self.answers, self.files = answers, []

    def measure(self, when: str) -> Any:
        self.files.append((when, self.compose.read_bytes()))
        return self.answers.pop(0)


@pytest.fixture
def compose(real_compose: Path, tmp_path: Path) -> Path:
    path = tmp_path / "docker-compose.yml"
    shutil.copyfile(real_compose, path)
    return path


@pytest.mark.parametrize("after, code", [(cap(1, 2), 1), (cap(8, None), 0)])
def test_capacity_is_measured_before_the_write_and_after_the_verification(
    compose: Path, after: Capacity, code: int
) -> None:
    original = compose.read_bytes()
    judge = FakeCapacity(compose, [cap(2, 4), after])
    tune, fake, _ = make(compose, "vllm-primary.--max-num-seqs=1", rollback_on_fail=True)
    tune.before_change = judge.measure_before
    tune.judge = lambda v: judge.decide(v.code, v.run_dir)
    assert tune.run() == code
    (when0, file0), (when1, file1) = judge.files
    assert when0 == "before the change" and file0 == original  # the file as it was
    assert when1 == "after the change" and file1 != original  # the changed file, verified
    assert fake.calls[:2] == ["restart", "verify"]
    assert tune.steps[:2] == ["measured before", "written"]
    assert compose.read_bytes() == (original if code else file1)


def test_a_failed_measurement_before_writes_nothing(compose: Path) -> None:
    original = compose.read_bytes()
    tune, fake, _ = make(compose, "vllm-primary.--max-num-seqs=4")

    def fails() -> None:
        raise RuntimeError("harness capacity before the change failed (exit code 3)")

    tune.before_change = fails
    with pytest.raises(RuntimeError):
        tune.run()
    assert compose.read_bytes() == original and fake.calls == [] and "written" not in tune.steps


def test_the_verdict_is_written_into_the_verification_record(
    compose: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import harness.report.finalize as finalize

    run = tmp_path / "run"
    run.mkdir()
    (run / "record.json").write_text(json.dumps({"run_id": "x", "status": "passed"}))
    monkeypatch.setattr(finalize, "finalize_run", lambda d: [])
    judge = FakeCapacity(compose, [cap(2, 4)])
    judge.before = cap(4, 8)
    verdict = judge.decide(0, run)
    assert isinstance(verdict, Judgement) and not verdict.keep
    doc = json.loads((run / "record.json").read_text())["tune"]["capacity"]
    assert doc["change"] == LOWERED and doc["keep"] is False
    assert doc["before"]["interval_rps"] == [4, 8] and doc["after"]["interval_rps"] == [2, 4]


def test_the_capacity_command_is_the_same_shape_both_times(compose: Path) -> None:
    judge = CapacityJudge(compose, "twin", Path("h.toml"), 3, 8.0)
    argv = judge.argv()
    assert argv[1:] == [
        "--config", "h.toml", "capacity", "--target", "twin", "--compose", str(compose),
        "--max-probes", "3", "--probe", "8s",
    ]  # fmt: skip


def test_one_trial_at_a_deciding_rate_is_within_the_noise_and_says_so() -> None:
    # A live tune on a busy 2-core machine: 1.07 req/s before (its search beside another
    # process), 2.36 after 3 slots became 1; three probes each, no repeat.
    before, after = cap(1, 1.41, 1.07, trials=1), cap(2, 4, 2.36, trials=1)
    j = capacity_judgement(True, before, after)
    assert not j.keep and j.lines[2] == "capacity within the noise"
    assert "probed fewer than 2 times" in j.lines[-1]


def test_the_trials_at_the_interval_ends_are_counted_from_the_probes() -> None:
    sec = {
        "knee": {"capacity_rps": 4.4, "interval_rps": [4.0, 5.66],
                 "limiting_resource": "primary slots"},
        "probes": [{"rate_rps": r} for r in (1.0, 2.0, 4.0, 8.0, 5.66, 5.66, 4.0)],
    }  # fmt: skip
    c = Capacity.from_section(sec)
    assert (c.lower_trials, c.upper_trials) == (2, 2)
    open_ended = Capacity.from_section({**sec, "knee": {**sec["knee"], "interval_rps": [8, None]}})
    assert (open_ended.lower_trials, open_ended.upper_rps) == (1, None)
