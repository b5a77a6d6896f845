"""`harness tune | sessions`, and `harness check --against`: changing the stack and
watching what it does. The edits' checks are in tune_flags.py, `sessions` in sessions.py."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.cli.common import DEFAULT_COMPOSE, examples
from harness.cli.sessions import add_sessions, cmd_sessions
from harness.cli.tune_flags import (
    check_flag_names,
    check_services,
    engine_flag_edits,
    engine_flag_list,
)
from harness.cli.tune_judge import add_judge_arguments
from harness.errors import InputError, StackError

# -- harness check --against ------------------------------------------------------------------


def check_against(ns: argparse.Namespace, result: Any) -> int:
    """`harness check --against REF`: the check, then every item changed since REF; exit 1 on
    a preflight error or an unreviewed human-review change."""
    from harness.compose.diff import diff_compose, read_ref
    from harness.tune import read_compose
    from harness.vram.render import render_markdown_table, render_text

    old, where = read_ref(ns.against, ns.compose)
    diff = diff_compose(old, read_compose(ns.compose), where, str(ns.compose))
    unreviewed = diff.unreviewed(ns.reviewed)
    if ns.json:
        doc = result.to_dict()
        doc["against"] = diff.to_dict(ns.reviewed)
        print(json.dumps(doc, indent=2))
    else:
        print(render_markdown_table(result) if ns.markdown else render_text(result))
        print()
        print(diff.render(ns.reviewed))
    if unreviewed:
        print(
            f"harness check: {len(unreviewed)} human-review change(s) since {where} not reviewed: "
            + ", ".join(c.item for c in unreviewed)
            + "; rerun with --reviewed once a human has looked at them",
            file=sys.stderr,
        )
    return 0 if result.ok and not unreviewed else 1


# -- running the main job against a restarted stack -------------------------------------------


def run_job(target: str, extra: Sequence[str], plugins: Sequence[object] = ()) -> Any:
    """The main job of `harness run` (acceptance, steady, kv-pressure) in one pytest session."""
    import pytest

    from harness.cli.common import MAIN_FILTER, MAIN_JOB, newest_run
    from harness.report.run_dir import reports_root
    from harness.tune import Verification

    before = set((reports_root() / "runs").glob("*"))
    args = [*MAIN_JOB, "--harness-target", target, "-p", "no:cacheprovider", "-k", MAIN_FILTER]
    code = int(pytest.main([*args, *extra], plugins=list(plugins)))
    return Verification(code, newest_run(target, before))


def keep_twin_up() -> object:
    """A pytest plugin: the session's twin outlives the run as if `harness up` had started it,
    recorded for `harness status` and `harness down` (again at the end: kv-pressure restarts
    the primary, which gives it a new process group)."""
    import types

    import pytest

    from harness.stack import state

    @pytest.fixture(scope="session", autouse=True)
    def _harness_tune_keeps_the_twin(stack: Any) -> Iterator[None]:
        state.save(stack)
        yield
        state.save(stack)

    # A module, not a class instance: pytest deprecates session fixtures on instances.
    plugin = types.ModuleType("harness_tune_keep_twin_up")
    plugin._harness_tune_keeps_the_twin = _harness_tune_keeps_the_twin  # type: ignore[attr-defined]
    return plugin


def _down() -> None:
    from harness.cli.stack import cmd_down

    code = cmd_down(argparse.Namespace(sweep=False))
    if code:
        raise StackError(f"`harness down` left processes running (exit code {code})")


def twin_refusal() -> str | None:
    """Why the twin cannot verify a change here, naming what can: on a box whose GPU NVML sees,
    `--target gpu` (the twin's install does not work there); elsewhere the twin's install, or
    `--target gpu` on the GPU box. None when the twin can run."""
    from harness.stack.factory import twin_capability, twin_missing
    from harness.telemetry.nvml import total_memory_or_none
    from harness.units import gib

    missing = twin_missing()
    if missing is None:
        return None
    total = total_memory_or_none()
    if total is not None:
        return (
            f"the CPU twin cannot run here ({missing[0]} is not installed), and NVML sees a "
            f"{gib(total)} GPU: use --target gpu to tune the stack on it"
        )
    return (
        f"the CPU twin cannot run here: {twin_capability()}; or, on the box with the GPU, "
        "use --target gpu to tune the stack there"
    )


def choose_target(given: str | None, say: Any = print) -> str:
    """`--target` when given; else twin, unless the twin cannot run here and NVML sees a GPU:
    then gpu, with a line saying so and why."""
    if given:
        return given
    from harness.stack.factory import twin_missing
    from harness.telemetry.nvml import total_memory_or_none
    from harness.units import gib

    missing = twin_missing()
    if missing is None:
        return "twin"
    total = total_memory_or_none()
    if total is None:
        return "twin"  # the twin's refusal names both ways
    say(
        f"tune: target gpu (no --target given): the CPU twin cannot run here ({missing[0]} is "
        f"not installed) and NVML sees a {gib(total)} GPU"
    )
    return "gpu"


@dataclass
class TwinRestarter:
    """The twin: the running twin stops (reverse start order); the verification's own
    bring-up, in start order and health-gated, is the restart, and the twin stays up after it
    when one was up before."""

    compose: Path
    config: Path | None = None
    target: str = "twin"
    was_up: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        from harness.stack import state

        doc = state.load()
        self.was_up = doc is not None and doc.get("target") == "twin"

    def problems(self) -> list[str]:
        from harness.stack import state

        out = []
        why = twin_refusal()
        if why:
            out.append(why)
        doc = state.load()
        if doc is not None and doc.get("target") != "twin":
            out.append(
                f"a {doc.get('target')} stack is up ({doc.get('run_dir')}); `harness down` first"
            )
        elif doc is not None and Path(doc.get("compose", "")).resolve() != self.compose.resolve():
            out.append(
                f"the twin that is up runs {doc.get('compose')}, not {self.compose}; "
                "`harness down` first"
            )
        return out

    def restart(self) -> None:
        if self.was_up:
            print("stopping the twin, last service first")
            _down()
        else:
            print("no twin was up: the run brings one up and takes it down again")

    def verify(self, pytest_args: Sequence[str]) -> Any:
        extra = ["--harness-compose", str(self.compose), *pytest_args]
        if not self.was_up:
            return run_job("twin", extra)
        return run_job("twin", [*extra, "--harness-keep-stack"], [keep_twin_up()])

    def restore(self) -> None:
        from harness.cli.stack import cmd_up
        from harness.stack import state

        if state.load() is not None:
            _down()
        if self.was_up:
            ns = argparse.Namespace(
                target="twin", compose=self.compose, kv_tokens=None, replace_running=False,
                config=self.config,
            )  # fmt: skip
            cmd_up(ns)

    def kept(self) -> None:
        """The twin's start is not production's: nothing to remember."""


@dataclass
class GpuRestarter:
    """The production stack: infra/stackctl.sh restart-gpu (engines stopped primary first,
    started router first, each health-gated) when an engine changed, `stackctl.sh up` for the
    other services; the run then attaches to it."""

    compose: Path
    engines: bool  # an engine's settings changed
    others: bool  # another service's settings changed
    target: str = "gpu"

    @property
    def script(self) -> Path:
        return self.compose.resolve().parent / "stackctl.sh"

    def problems(self) -> list[str]:
        from harness.stack import state

        out = []
        if not os.environ.get("HARNESS_ROUTER_API_KEY"):
            out.append(
                "HARNESS_ROUTER_API_KEY is not set: the run after the restart attaches to the "
                "stack and needs the router's key"
            )
        if not self.script.is_file():
            out.append(f"{self.script} is missing: it restarts the stack one service at a time")
        if shutil.which("docker") is None:
            out.append("the docker command is not installed")
        doc = state.load()
        if doc is not None:
            out.append(f"a {doc.get('target')} harness stack is up; `harness down` first")
        return out

    def _stackctl(self, action: str) -> None:
        harness = shutil.which("harness") or str(Path(sys.executable).with_name("harness"))
        print(f"{self.script} {action} {self.compose}")
        proc = subprocess.run(
            [str(self.script), action, str(self.compose)], env={**os.environ, "HARNESS": harness}
        )
        if proc.returncode:
            raise StackError(f"{self.script} {action} failed (exit code {proc.returncode})")

    def restart(self) -> None:
        if self.engines:
            self._stackctl("restart-gpu")
        if self.others or not self.engines:
            self._stackctl("up")

    def verify(self, pytest_args: Sequence[str]) -> Any:
        """The main job attached to the restarted production stack; --harness-xai (search-routed
        chats reach the paid xAI API) only when the owner put it in --pytest-args."""
        if "--harness-xai" not in pytest_args:
            print(
                "tune: the run sends no search-routed chat (production's router forwards them "
                "to the paid xAI API); --pytest-args=--harness-xai to include them"
            )
        return run_job("attach", ["--harness-compose", str(self.compose), *pytest_args])

    def restore(self) -> None:
        self.restart()

    def kept(self) -> None:
        from harness.compose.diff import remember_good

        print(f"kept as the last good compose file: {remember_good(self.compose)}")


def cmd_tune(ns: argparse.Namespace) -> int:
    from harness.compose import load_stack
    from harness.compose.edit import parse_env_edit, parse_flag_edit
    from harness.config import load_settings
    from harness.telemetry.nvml import total_memory_or_none
    from harness.tune import Tune, Verification, check_text, judge, propose

    if ns.envelope and ns.judge != "capacity":
        raise InputError(f"--envelope {ns.envelope}: the envelope is measured only with "
                         "--judge capacity (beside its two capacity searches)")  # fmt: skip
    overrides = {"check.gpu_memory": ns.gpu_memory} if ns.gpu_memory else {}
    settings = load_settings(ns.config, overrides)
    edits = [parse_flag_edit(t) for t in ns.changes] + [parse_env_edit(t) for t in ns.env]
    spec = load_stack(ns.compose)
    check_services(edits, spec)
    target = choose_target(ns.target)
    if engine_flag_edits(edits, spec):
        flags = engine_flag_list(spec, target)
        print(f"tune: {flags.sentence()}")
        check_flag_names(edits, spec, flags)
    proposal = propose(ns.compose, edits)
    # The twin is sized from the configured card; the GPU stack from the card NVML sees.
    nvml_total = None if target == "twin" or ns.gpu_memory else total_memory_or_none()
    restarter: TwinRestarter | GpuRestarter
    if target == "twin":
        restarter = TwinRestarter(ns.compose, ns.config)
    else:
        engines = {s.name for s in load_stack(ns.compose).engines}
        changed = {c.key[0] for c in proposal.diff.changes}
        restarter = GpuRestarter(ns.compose, bool(changed & engines), bool(changed - engines))

    capacity: Any = None
    if ns.judge == "capacity":
        from harness.cli.tune_judge import CapacityJudge

        capacity = CapacityJudge(
            ns.compose, "twin" if target == "twin" else "attach", ns.config,
            ns.capacity_probes, ns.capacity_probe, ns.envelope, (*ns.changes, *ns.env),
        )  # fmt: skip

    def decide(v: Verification) -> Any:
        if capacity is not None:
            return capacity.decide(v.code, v.run_dir)
        if v.run_dir is not None:
            from harness.report.finalize import finalize_run

            # The fallback rate joins the comparison, as in a nightly run.
            ran = "twin" if target == "twin" else "attach"
            print(add_sessions(v.run_dir, ran, ns.compose, ns.config, run_only=True))
            finalize_run(v.run_dir)
        return judge(v, ns.baseline, settings)

    tune = Tune(
        proposal,
        check=lambda text: check_text(text, ns.compose, settings, nvml_total),
        restarter=restarter,
        judge=decide,
        reviewed=ns.reviewed,
        rollback_on_fail=ns.rollback_on_fail,
        pytest_args=shlex.split(ns.pytest_args or ""),
        before_change=capacity.measure_before if capacity is not None else None,
    )
    return tune.run()


# -- parsers ----------------------------------------------------------------------------------


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    tune = sub.add_parser(
        "tune",
        help="change engine flags or ai-router settings, prove the change on a restarted stack",
        description=(
            "Try a flag change and keep it only if the stack still passes. The compose file is "
            "edited in place (comments and order stay) and judged by `harness check` before "
            "and after; then the stack restarts one service at a time, the main job (acceptance, "
            "steady, kv-pressure) runs against it, and the run is compared with the baseline. "
            "Safe knobs (e.g. --max-num-seqs) go ahead; anything else needs a human's look "
            "(--reviewed). A change that fails or regresses is refused or, with "
            "--rollback-on-fail, rolled back (exit 1). A flag's name is checked first against "
            "vLLM's own serve flags (on gpu the engines' image when Docker has it locally, else "
            "the twin's vllm; read once per version), else the harness's list, and the output "
            "says which; a misspelt flag or service is refused (exit 2) with the nearest name."
        ),
        epilog=examples(
            "harness tune vllm-primary.--max-num-seqs=4",
            "harness tune vllm-primary.--gpu-memory-utilization=0.6 --rollback-on-fail",
            "harness tune --env ai-router.XAI_MODEL=grok-4-fast --reviewed",
            "harness tune --target gpu vllm-primary.--max-num-seqs=4   # on the GPU box",
            "harness tune vllm-primary.--max-num-seqs=4 --judge capacity --rollback-on-fail",
            "harness tune vllm-primary.--max-num-seqs=2 --judge capacity --envelope primary",
        ),
    )
    tune.add_argument(
        "changes", nargs="*", metavar="SERVICE.FLAG=VALUE",
        help="e.g. vllm-primary.--max-num-seqs=4; SERVICE.model=... and SERVICE.image=... too",
    )  # fmt: skip
    tune.add_argument(
        "--env", action="append", default=[], metavar="SERVICE.NAME=VALUE",
        help="an environment variable of a service, e.g. ai-router.XAI_MODEL=grok-4-fast",
    )  # fmt: skip
    tune.add_argument(
        "--reviewed", action="store_true", help="a human has reviewed the human-review items"
    )
    tune.add_argument(
        "--rollback-on-fail", action="store_true",
        help="on a failed run or a regression, restore the previous file and restart again",
    )  # fmt: skip
    tune.add_argument(
        "--target", default=None, choices=("twin", "gpu"),
        help="twin: the CPU twin; gpu: the production stack via infra/stackctl.sh, verified on "
        "attach (search-routed chats only with --pytest-args=--harness-xai, paid). Default: "
        "twin, or gpu where the twin cannot run and NVML sees a GPU",
    )  # fmt: skip
    tune.add_argument("--compose", type=Path, default=DEFAULT_COMPOSE)
    tune.add_argument(
        "--baseline", default=None, metavar="PATH|last-green",
        help="the run to compare with (default: reports/baseline.json, else last-green)",
    )  # fmt: skip
    tune.add_argument(
        "--gpu-memory", default=None,
        help="total GPU memory, e.g. 96GiB (default: the GPU NVML sees, else [check] "
        "gpu_memory in harness.toml)",
    )  # fmt: skip
    tune.add_argument(
        "--pytest-args", default="", metavar="ARGS", help='extra pytest arguments, e.g. "-x"'
    )
    add_judge_arguments(tune)
    tune.set_defaults(func=cmd_tune)

    ses = sub.add_parser(
        "sessions",
        help="the ai-router's session log: route mix, fallbacks, classifier latency, errors",
        description=(
            "What did real users' chats do? A summary of the ai-router's session log: how "
            "many went local and how many to search, fallbacks, the classifier's latency by "
            "conversation length, and errors."
        ),
        epilog=examples(
            "harness sessions --since 24h",
            "harness sessions reports/runs/20250101T020000Z-twin   # a run's own log",
            "harness sessions --json",
        ),
    )  # fmt: skip
    ses.add_argument(
        "path", nargs="?", default=None, metavar="PATH",
        help="a session log, or a run directory (default: targets.attach.router_session_log, "
        "else the compose project's router-logs volume)",
    )  # fmt: skip
    ses.add_argument(
        "--since", default=None, metavar="DURATION",
        help="only the last DURATION, e.g. 24h, 30m, 7d (default: the whole log)",
    )  # fmt: skip
    ses.add_argument("--compose", type=Path, default=DEFAULT_COMPOSE)
    ses.add_argument("--json", action="store_true", help="the summary as JSON")
    ses.set_defaults(func=cmd_sessions)
