"""`harness load`: one load profile against a fresh stack, and the worker that joins such a
run from another machine."""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from harness.cli.common import (
    DEFAULT_COMPOSE,
    check_target_inputs,
    examples,
    non_negative_int,
    positive_float,
    positive_int,
    raise_interrupt,
    recorded_misfit,
    seconds,
)
from harness.cli.replay import add_replay_arguments
from harness.errors import InputError, StackError
from harness.load.profiles import PROFILES
from harness.progress import reporting


def address(text: str) -> tuple[str, int]:
    """HOST:PORT of a locust master."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT, e.g. 192.168.1.20:5557")
    return host, int(port)


def cmd_load(ns: argparse.Namespace) -> int:
    from harness.cli.replay import replay_inputs, run_replay
    from harness.compose import load_stack
    from harness.config import load_settings
    from harness.load.processes import Distributed
    from harness.load.runner import LoadResult, run_profile
    from harness.load.slo import check_slos
    from harness.load.slo_table import check_slo_settings, slo_table
    from harness.report.load_run import LoadRunRecord
    from harness.report.render_md import load as load_section
    from harness.report.replay import reproduction_problems
    from harness.report.run_dir import new_run_dir
    from harness.report.verdict import verdict_line
    from harness.stack.base import Backend
    from harness.stack.factory import make_backend, parse_kv_overrides
    from harness.stack.state import RecordedBackend

    if ns.worker:
        return cmd_load_worker(ns)
    distributed = Distributed(
        processes=ns.processes, remote=ns.workers, bind=ns.master, wait_s=ns.workers_wait
    )
    if ns.workers and ns.master is None:
        raise InputError(
            "--workers: workers on other machines need an address to join; give the master's "
            "with --master HOST:PORT (e.g. --master 0.0.0.0:5557)"
        )
    settings = load_settings(ns.config)
    check_slo_settings(settings)  # a typo in [slo.*] stops the run before the stack comes up
    replay = replay_inputs(ns, settings)  # the log to replay, refused before anything starts
    recorded = recorded_stack(ns)
    target = ns.target or (recorded["target"] if recorded else "twin")
    knobs = settings.typed.load
    spec = load_stack(ns.compose)
    kv_items = list(ns.kv_tokens or [])
    max_tokens = knobs.max_tokens
    if ns.profile == "kv-pressure":
        max_tokens = knobs.kv_pressure_max_tokens
        if target == "twin" and not kv_items and recorded is None:
            kv_items = [f"primary={knobs.twin_kv_pressure_capacity}"]
    duration = ns.duration or knobs.duration_s.get(ns.profile, 0.0)
    kv = parse_kv_overrides(kv_items, spec) if recorded is None else {}
    check_target_inputs(target)
    # Only now, with every input checked, does the run get a directory and a history line.
    run_dir = new_run_dir(f"{target}-load")
    # The same record.json, report.md and report.html as a pytest run, failed runs included.
    run = LoadRunRecord.start(run_dir, target, ns.compose, settings)
    signal.signal(signal.SIGTERM, raise_interrupt)
    # With --json, stdout carries the one document; progress goes to stderr as plain lines.
    with reporting(stream=sys.stderr if ns.json else None) as progress:
        result: LoadResult | None = None
        violations: list[str] = []
        bad_input = False
        try:
            try:
                backend: Backend
                if recorded is not None:
                    backend = RecordedBackend(recorded, spec, run_dir)
                    progress(
                        f"using the {target} stack `harness up` started ({recorded['run_dir']})"
                    )
                else:
                    backend = make_backend(
                        target, ns.compose, settings, run_dir, kv_overrides=kv,
                        progress=progress, real_xai=ns.harness_xai,
                    )  # fmt: skip
                stack = backend.up()
            except InputError:
                bad_input = True  # nothing was measured: no run directory, no history line
                raise
            run.stack_up(stack)
            try:
                if replay is not None:
                    result = run_replay(
                        stack, replay, run_dir / "load", speed=ns.speed or 1.0,
                        settings=settings, source=ns.sessions, since=ns.since, progress=progress,
                    )  # fmt: skip
                else:
                    progress(f"running {ns.profile} for {duration:.0f} s against {stack.entry.url}")
                    if ns.workers:
                        host, port = ns.master
                        progress(
                            f"waiting up to {ns.workers_wait:.0f} s for {ns.workers} worker(s): "
                            f"harness load {ns.profile} --target attach --worker HOST:{port} on "
                            f"each (the master listens on {host}:{port})"
                        )
                    result = run_profile(
                        stack,
                        ns.profile,
                        run_dir / "load",
                        duration_s=duration,
                        users=ns.users,
                        max_tokens=max_tokens,
                        context_fraction=knobs.context_fraction,
                        warmup_s=knobs.soak_warmup_s,
                        distributed=distributed,
                        slo=slo_table(settings, ns.profile, stack.target),
                    )
            finally:
                backend.down()
            violations = check_slos(settings, result.summary, stack.primary.name)
            violations += reproduction_problems(result.summary.get("replay") or {})
        finally:
            if bad_input:
                shutil.rmtree(run_dir, ignore_errors=True)
            else:
                written = run.finish(ns.profile, result.summary if result else None, not violations)
    if ns.json:
        doc = {
            "run_dir": str(run_dir),
            "profile": ns.profile,
            "target": target,
            "exit_code": 1 if violations else 0,
            "slo_violations": violations,
            "summary": result.summary,
            "files": [str(p) for p in written],
            "requests": str(result.out_dir / "requests.jsonl"),
        }
        print(json.dumps(doc, indent=2, default=str))
        return 1 if violations else 0
    print("\n".join(load_section(run.record.doc)))
    print(f"reports: {', '.join(str(p) for p in written)}; per-request data: {result.out_dir}")
    for v in violations:
        print(f"SLO: {v}")
    print(verdict_line(run.record.doc, run_dir))
    return 1 if violations else 0


def recorded_stack(ns: argparse.Namespace) -> dict[str, Any] | None:
    """The stack `harness up` recorded, when this run is to measure it; None when none is up or
    the run attaches to configured URLs. A stack up that does not fit the run refuses it: a
    second stack is never started beside it."""
    from harness.stack import state

    doc = state.load()
    if doc is None or ns.target == "attach":
        return None
    why = recorded_misfit(doc, ns.target, ns.compose, "load")
    if why is None and ns.kv_tokens:
        why = (
            f"--kv-tokens sizes a fresh twin, and a {doc.get('target')} stack is up (run dir "
            f"{doc.get('run_dir')}): `harness down` first, or `harness up --kv-tokens ...`"
        )
    if why:
        raise StackError(why)
    return doc


def cmd_load_worker(ns: argparse.Namespace) -> int:
    """Run the profile's users for the master at --worker, against the attached stack; every
    record goes to the master. The master decides how many users and for how long."""
    from harness.config import load_settings
    from harness.load.processes import run_worker
    from harness.load.runner import HARNESS_ROOT, locustfile, profile_settings
    from harness.report.run_dir import new_run_dir
    from harness.stack.factory import make_backend

    if ns.target != "attach":
        raise InputError(
            f"--worker joins a run on another machine and sends load to its stack: it needs "
            f"--target attach (the stack's URLs from harness.toml [targets.attach]), not "
            f"--target {ns.target or 'twin'}"
        )
    if ns.processes != 1 or ns.workers or ns.master is not None:
        raise InputError("--worker runs one load process; --processes, --workers and --master "
                         "belong to the master's command")  # fmt: skip
    settings = load_settings(ns.config)
    knobs = settings.typed.load
    check_target_inputs("attach")
    run_dir = new_run_dir("attach-load-worker")
    name = ns.worker_name or f"{socket.gethostname()}-{run_dir.name}"
    signal.signal(signal.SIGTERM, raise_interrupt)
    with reporting() as progress:
        backend = make_backend(
            "attach", ns.compose, settings, run_dir, progress=progress, real_xai=ns.harness_xai
        )
        stack = backend.up()
        try:
            max_tokens = (
                knobs.kv_pressure_max_tokens if ns.profile == "kv-pressure" else knobs.max_tokens
            )
            load = profile_settings(
                stack, ns.profile, run_dir / "requests.jsonl", duration_s=None,
                users=ns.users, max_tokens=max_tokens, context_fraction=knobs.context_fraction,
            )  # fmt: skip
            host, port = ns.worker
            progress(f"worker {name}: joining the master at {host}:{port} ({ns.profile})")
            code = run_worker(
                locustfile(ns.profile, HARNESS_ROOT), load, ns.worker, run_dir,
                cwd=HARNESS_ROOT, name=name,
            )  # fmt: skip
        finally:
            backend.down()
    print(f"worker {name}: locust exited with {code}; its log: {run_dir}")
    return 0 if code == 0 else 3


def add_load_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    load = sub.add_parser(
        "load",
        help="run one load profile against the stack `harness up` started, else a fresh one",
        description=(
            "Send one load profile through the ai-router and judge it against its SLOs "
            "([slo.PROFILE] in harness.toml). It measures the stack `harness up` started when "
            "one is up; otherwise it brings up a fresh one for the run and stops it afterwards "
            "(never a second one beside a running stack). The profiles: steady (max-num-seqs "
            "users, the everyday latency), saturate and ramp (more users than slots: requests "
            "must queue), kv-pressure (long prompts that fill the primary's KV cache), soak "
            "(long, watches memory and open files) and conversation (multi-turn chats up to "
            "the longest context). Writes record.json, report.md and report.html under "
            "reports/runs/, and ends with one line: PASSED, or FAILED and why. Exit 1 when an "
            "SLO is missed."
        ),
        epilog=examples(
            "harness load steady                          # twin, [load.duration_s] steady",
            "harness load saturate --duration 2m --users 12",
            "harness up && harness load kv-pressure       # measure the stack kept up",
            "HARNESS_ROUTER_API_KEY=... harness load steady --target attach   # the live stack",
            "harness load steady --processes 4            # more load than one process sends",
            "harness load replay --sessions router-logs --since 24h --speed 4",
        ),
    )  # fmt: skip
    load.add_argument(
        "profile", choices=(*PROFILES, "replay"),
        help="the load profile, or replay: the ai-router's session log sent again (--sessions)",
    )  # fmt: skip
    load.add_argument(
        "--target", default=None, choices=("twin", "attach", "gpu"),
        help="where the stack comes from (default: the stack `harness up` started, else twin); "
        "twin or gpu while `harness up` has another stack up is refused",
    )  # fmt: skip
    load.add_argument("--compose", type=Path, default=DEFAULT_COMPOSE)
    load.add_argument(
        "--duration", type=seconds, default=None,
        help="how long the load runs, e.g. 60s, 2m (default: the profile's [load.duration_s] "
        "in harness.toml, e.g. steady = 60)",
    )  # fmt: skip
    load.add_argument(
        "--users", type=positive_int, default=None,
        help="concurrent users (default: the profile's own, from the primary's --max-num-seqs: "
        "1x for steady, 2x for saturate and soak, 3x at ramp's peak; kv-pressure from the KV "
        "pool)",
    )  # fmt: skip
    load.add_argument(
        "--kv-tokens", action="append", metavar="ENGINE=TOKENS",
        help="a fresh twin's KV capacity for one engine, e.g. primary=49152 or primary=1.5x "
        "(times its --max-model-len); repeat for both engines",
    )  # fmt: skip
    load.add_argument(
        "--processes",
        type=positive_int,
        default=1,
        help="load-generating processes on this machine, for more load than one process "
        "sends (a run whose client falls behind is reported invalid)",
    )
    load.add_argument(
        "--workers",
        type=non_negative_int,
        default=0,
        help="more workers that join from other machines (each runs `harness load PROFILE "
        "--target attach --worker HOST:PORT`); needs --master",
    )
    load.add_argument(
        "--master",
        type=address,
        default=None,
        metavar="HOST:PORT",
        help="where the master listens for workers from other machines, e.g. 0.0.0.0:5557 "
        "(default: loopback, a free port, this machine's --processes only)",
    )
    load.add_argument(
        "--workers-wait",
        type=positive_float,
        default=120.0,
        metavar="SECONDS",
        help="how long the master waits for every worker to join before the run fails",
    )
    load.add_argument(
        "--worker",
        type=address,
        default=None,
        metavar="HOST:PORT",
        help="join the run of the master at HOST:PORT as one worker, against the attached "
        "stack (--target attach); its records go to the master",
    )
    load.add_argument(
        "--worker-name",
        default=None,
        help="this worker's name on its records (default: host name and run id)",
    )
    load.add_argument(
        "--harness-xai",
        action="store_true",
        help="search-routed chats reach the real xAI API (costs money): on attach, production's "
        "router calls it, and without this flag the chat users send only local prompts; on gpu, "
        "the router gets the owner's key instead of the fake xAI",
    )
    load.add_argument(
        "--json",
        action="store_true",
        help="the outcome as one JSON document on stdout (run directory, summary, SLO "
        "violations, files); progress goes to stderr",
    )
    add_replay_arguments(load)
    load.set_defaults(func=cmd_load)
