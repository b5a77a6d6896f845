"""`harness tune` with a fake restarter: refusals touch nothing, a change is written beside the
previous file, and a rollback restores that file byte for byte."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import report_fixtures as fixtures

from harness.compose.edit import parse_env_edit, parse_flag_edit
from harness.config import Settings
from harness.errors import InputError
from harness.tune import (
    Judgement,
    Tune,
    Verification,
    check_text,
    judge,
    prev_path,
    propose,
    side_by_side,
)
from harness.units import GIB
from harness.vram.check import CheckResult

SETTINGS = Settings(path=None, environ={})


@pytest.fixture(autouse=True)
def no_vllm_to_ask(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flag names are checked against the harness's list here, never a vLLM started for it
    (tests/unit/test_tune_flag_names.py asks vLLM)."""
    from harness.stack import vllm_flags

    monkeypatch.setattr(vllm_flags, "sources_for", lambda target, images: [])


@dataclass
class FakeRestarter:
    target: str = "twin"
    verdict_code: int = 0
    trouble: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    compose: Path | None = None
    seen: list[bytes] = field(default_factory=list)  # the compose file at each restart

    def problems(self) -> list[str]:
        return self.trouble

    def restart(self) -> None:
        self.calls.append("restart")
        assert self.compose is not None
        self.seen.append(self.compose.read_bytes())

    def verify(self, pytest_args: Sequence[str]) -> Verification:
        self.calls.append("verify")
        return Verification(self.verdict_code, None)

    def restore(self) -> None:
        self.calls.append("restore")
        assert self.compose is not None
        self.seen.append(self.compose.read_bytes())

    def kept(self) -> None:
        self.calls.append("kept")


@pytest.fixture
def compose(real_compose: Path, tmp_path: Path) -> Path:
    path = tmp_path / "docker-compose.yml"
    shutil.copyfile(real_compose, path)
    return path


def make(
    compose: Path,
    *changes: str,
    env: tuple[str, ...] = (),
    keep: bool = True,
    restarter: FakeRestarter | None = None,
    checked: list[str] | None = None,
    **kw: bool,
) -> tuple[Tune, FakeRestarter, list[str]]:
    edits = [parse_flag_edit(c) for c in changes] + [parse_env_edit(e) for e in env]
    fake = restarter or FakeRestarter()
    fake.compose = compose
    out: list[str] = []

    def check(text: str) -> CheckResult:
        if checked is not None:
            checked.append(text)
        return check_text(text, compose, SETTINGS)

    tune = Tune(
        propose(compose, edits),
        check=check,
        restarter=fake,
        judge=lambda v: Judgement(keep, ("judged",)),
        say=out.append,
        **kw,  # type: ignore[arg-type]
    )
    return tune, fake, out


def test_a_preflight_failure_touches_nothing(compose: Path) -> None:
    original = compose.read_bytes()
    tune, fake, out = make(compose, "vllm-router.--max-model-len=8192")
    assert tune.run() == 1
    text = "\n".join(out)
    assert "refused before touching anything: the change fails preflight" in text
    assert "rule max-model-len-equal" in text
    assert compose.read_bytes() == original and not prev_path(compose).exists()
    assert fake.calls == []


def test_a_human_review_item_needs_reviewed(compose: Path) -> None:
    original = compose.read_bytes()
    checked: list[str] = []
    tune, fake, out = make(compose, "vllm-router.model=Qwen/Qwen2.5-7B-Instruct", checked=checked)
    assert tune.run() == 1
    assert "human-review item(s) vllm-router model; rerun with --reviewed" in "\n".join(out)
    assert compose.read_bytes() == original and not prev_path(compose).exists()
    assert fake.calls == [] and checked == []  # refused before the check: the model may be unknown


def test_reviewed_lets_a_human_review_item_through_to_the_check(compose: Path) -> None:
    tune, fake, out = make(compose, "traefik.image=traefik:v3.2", reviewed=True)
    assert tune.run() == 0
    assert fake.calls == ["restart", "verify", "kept"]
    assert "(accepted with --reviewed)" in "\n".join(out)


def test_a_kept_change_is_one_line_and_the_previous_file_is_kept(compose: Path) -> None:
    original = compose.read_bytes()
    tune, fake, out = make(compose, "vllm-primary.--max-num-seqs=4")
    assert tune.run() == 0
    assert prev_path(compose).read_bytes() == original
    assert compose.read_bytes() == original.replace(
        b'--max-num-seqs\n      - "3"\n      - --kv-cache-dtype\n      - fp8\n      - --reasoning',
        b'--max-num-seqs\n      - "4"\n      - --kv-cache-dtype\n      - fp8\n      - --reasoning',
    )
    assert fake.calls == ["restart", "verify", "kept"]
    assert fake.seen == [compose.read_bytes()]  # restarted with the change written
    assert "verdict: keep (vllm-primary.--max-num-seqs=4)" in out


def test_rollback_on_fail_restores_the_file_byte_for_byte(compose: Path) -> None:
    original = compose.read_bytes()
    tune, fake, _ = make(
        compose, "vllm-primary.--max-num-seqs=1", env=("ai-router.XAI_MODEL=x",), keep=False,
        rollback_on_fail=True,
    )  # fmt: skip
    assert tune.run() == 1
    assert compose.read_bytes() == original
    assert fake.calls == ["restart", "verify", "restore"]
    assert fake.seen[0] != original and fake.seen[1] == original  # restored, then restarted
    assert tune.steps == ["written", "restarted", "verified", "rolled back", "restored"]


def test_without_rollback_on_fail_the_change_stays_and_says_how_to_undo(compose: Path) -> None:
    original = compose.read_bytes()
    tune, fake, out = make(compose, "vllm-primary.--max-num-seqs=1", keep=False)
    assert tune.run() == 1
    assert compose.read_bytes() != original and prev_path(compose).read_bytes() == original
    assert fake.calls == ["restart", "verify"]
    assert f"cp {prev_path(compose)} {compose}" in out[-1]


def test_a_target_that_cannot_prove_it_refuses_before_writing(compose: Path) -> None:
    original = compose.read_bytes()
    fake = FakeRestarter(trouble=["HARNESS_ROUTER_API_KEY is not set"])
    tune, _, out = make(compose, "vllm-primary.--max-num-seqs=4", restarter=fake)
    assert tune.run() == 1
    assert "refused before touching anything: HARNESS_ROUTER_API_KEY is not set" in out[-1]
    assert compose.read_bytes() == original and fake.calls == []


def test_a_value_the_engine_would_refuse_is_bad_input(compose: Path) -> None:
    with pytest.raises(InputError, match="--max-num-seqs expects an integer"):
        propose(compose, [parse_flag_edit("vllm-primary.--max-num-seqs=four")])


def test_nothing_to_change(compose: Path) -> None:
    tune, fake, out = make(compose, "vllm-primary.--max-num-seqs=3")
    assert tune.run() == 0 and fake.calls == []
    assert out[-1] == "nothing to change: the compose file already says so"


def test_side_by_side_marks_what_moves(compose: Path) -> None:
    before = check_text(compose.read_text(), compose, SETTINGS)
    # At 0.09 the router's pool holds 1.59 full contexts, fewer than --max-num-seqs 3.
    after = check_text(compose.read_text().replace('"0.14"', '"0.09"'), compose, SETTINGS)
    rows = [line.split() for line in side_by_side(before, after).splitlines()]
    assert ["vllm-router", "model", "Qwen/Qwen2.5-3B-Instruct", "Qwen/Qwen2.5-3B-Instruct"] in rows
    assert ["utilization", "0.14", "0.09", "*"] in rows
    assert ["capacity", "331,568", "tokens", "51,952", "tokens", "*"] in rows
    assert ["at", "max-model-len", "10.12x", "1.59x", "*"] in rows
    assert ["headroom", "19.14", "GiB", "23.94", "GiB", "*"] in rows
    assert ["kv-holds-max-num-seqs", "ok", "warning", "vllm-router", "*"] in rows
    assert ["fits-card", "ok", "ok"] in rows


def write_run(tmp_path: Path, status: str = "passed", **top: object) -> Path:
    run_dir = tmp_path / "runs" / "20261129T000000Z-twin"
    run_dir.mkdir(parents=True)
    doc = fixtures.record("20261129T000000Z-twin", **top)
    doc["status"] = status
    (run_dir / "record.json").write_text(json.dumps(doc))
    return run_dir


def test_judge_without_a_baseline_rests_on_the_run(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path)
    verdict = judge(Verification(0, run_dir), None, SETTINGS)
    assert verdict.keep
    assert any("nothing to compare with" in ln for ln in verdict.lines)
    assert any("steady: vllm-primary ran at most 3 at once (--max-num-seqs 3)" in ln
               for ln in verdict.lines)  # fmt: skip
    assert not judge(Verification(1, run_dir), None, SETTINGS).keep
    assert not judge(Verification(0, None), None, SETTINGS).keep


def test_judge_rolls_back_on_a_regression(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path)
    base = fixtures.record("20261128T000000Z-twin")
    base["telemetry"] = {"sessions": {"fallback_rate": 0.0}}
    doc = json.loads((run_dir / "record.json").read_text())
    doc["telemetry"] = {"sessions": {"fallback_rate": 0.2}}
    (run_dir / "record.json").write_text(json.dumps(doc))
    (tmp_path / "base.json").write_text(json.dumps(base))
    verdict = judge(Verification(0, run_dir), str(tmp_path / "base.json"), SETTINGS)
    assert not verdict.keep
    assert "sessions.fallback_rate" in "\n".join(verdict.lines)


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["vllm-router.--max-model-len=8192"], "rule max-model-len-equal"),
        (["vllm-router.model=Qwen/Qwen2.5-7B-Instruct"], "human-review item(s) vllm-router model"),
        (
            ["--env", "ai-router.ROUTER_CLASSIFIER_MODEL=x"],
            "ai-router environment.ROUTER_CLASSIFIER_MODEL",
        ),
    ],
)
def test_the_command_refuses_naming_the_rule_or_item(
    compose: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    named: str,
) -> None:
    from harness.cli import main

    monkeypatch.setenv("HARNESS_STATE_DIR", str(tmp_path / "state"))
    original = compose.read_bytes()
    assert main(["tune", *argv, "--compose", str(compose), "--gpu-memory", "96GiB"]) == 1
    assert named in capsys.readouterr().out
    assert compose.read_bytes() == original and not prev_path(compose).exists()


def test_the_kept_twin_is_recorded_when_it_is_up_and_again_at_the_end(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.cli.tune import keep_twin_up
    from harness.stack import state

    saved: list[str] = []
    monkeypatch.setattr(state, "save", saved.append)
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture(scope="session")
        def stack():
            return "the twin"

        def test_one():
            pass

        def test_two():
            pass
        """
    )
    result = pytester.runpytest_inprocess(
        "-p", "no:harness", "-W", "error::pytest.PytestRemovedIn10Warning",
        # The inner session has no ini file; without this pytest-asyncio warns into the outer one.
        "-o", "asyncio_default_fixture_loop_scope=function",
        plugins=[keep_twin_up()],
    )  # fmt: skip
    result.assert_outcomes(passed=2)
    assert saved == ["the twin", "the twin"]


# -- the target: gpu on a GPU box that cannot run the twin ------------------------------------


@pytest.fixture
def box(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """This machine as the tune sees it: whether the twin's modules are installed, and the GPU
    memory NVML reports (None: no GPU)."""
    from harness.stack import factory, twin_host
    from harness.telemetry import nvml

    monkeypatch.setenv("HARNESS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("HARNESS_ROUTER_API_KEY", raising=False)

    def make_box(twin: bool, gpu_bytes: int | None) -> None:
        def missing() -> tuple[str, str] | None:
            return None if twin else ("vllm", "twin")

        # Where the check lives (its own capability line reads it) and where the CLI reads it.
        monkeypatch.setattr(twin_host, "twin_missing", missing)
        monkeypatch.setattr(factory, "twin_missing", missing)
        monkeypatch.setattr(nvml, "total_memory_or_none", lambda index=0: gpu_bytes)

    return make_box


def tune_cli(compose: Path, *argv: str) -> int:
    from harness.cli import main

    return main(["tune", "vllm-primary.--max-num-seqs=4", "--compose", str(compose), *argv])


def test_without_target_a_gpu_box_that_cannot_run_the_twin_tunes_the_gpu(
    box: Any, compose: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    box(twin=False, gpu_bytes=96 * GIB)
    original = compose.read_bytes()
    # The gpu path's own refusal (no router key) shows which restarter was chosen.
    assert tune_cli(compose) == 1
    out = capsys.readouterr().out
    assert "tune: target gpu (no --target given)" in out
    assert "vllm is not installed" in out and "NVML sees a 96.00 GiB GPU" in out
    assert "HARNESS_ROUTER_API_KEY is not set" in out
    assert "make install" not in out
    assert compose.read_bytes() == original


def test_without_target_the_twin_where_it_can_run_even_beside_a_gpu(box: Any) -> None:
    from harness.cli.tune import choose_target

    said: list[str] = []
    box(twin=True, gpu_bytes=96 * GIB)
    assert choose_target(None, said.append) == "twin" and said == []
    box(twin=False, gpu_bytes=None)
    assert choose_target(None, said.append) == "twin" and said == []
    box(twin=False, gpu_bytes=96 * GIB)
    assert choose_target("twin", said.append) == "twin" and said == []
    assert choose_target(None, said.append) == "gpu" and len(said) == 1


def test_no_twin_and_no_gpu_the_refusal_names_both_ways(
    box: Any, compose: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    box(twin=False, gpu_bytes=None)
    original = compose.read_bytes()
    assert tune_cli(compose, "--gpu-memory", "96GiB") == 1
    out = capsys.readouterr().out
    assert "refused before touching anything: the CPU twin cannot run here" in out
    assert "make install, extra 'twin'" in out and "--target gpu" in out
    assert "tune: target gpu" not in out
    assert compose.read_bytes() == original


def test_target_twin_on_a_gpu_box_without_the_twin_names_target_gpu(
    box: Any, compose: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    box(twin=False, gpu_bytes=80 * GIB)
    assert tune_cli(compose, "--target", "twin", "--gpu-memory", "96GiB") == 1
    out = capsys.readouterr().out
    assert "the CPU twin cannot run here (vllm is not installed)" in out
    assert "use --target gpu" in out
    # The twin's install does not work on the GPU box: it is not suggested there.
    assert "make install" not in out
