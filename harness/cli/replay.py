"""`harness load replay --sessions PATH|router-logs`: the ai-router's own session log sent
again to the stack, at its logged pace compressed by --speed (harness.load.replay builds the
workload, harness.report.replay sets the replay beside the log). `harness load` brings the stack
up and down and writes the run's record; this module reads the log, refuses what cannot be
replayed before anything starts, and runs the replay on the stack it is given."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import InputError

if TYPE_CHECKING:
    from harness.config import Settings
    from harness.load.replay import LoggedRequest
    from harness.load.runner import LoadResult
    from harness.stack.base import Stack

ROUTER_LOGS = "router-logs"


def replay_inputs(ns: argparse.Namespace, settings: Settings) -> list[LoggedRequest] | None:
    """The logged requests to replay for `harness load replay`; None for another profile.
    Raises InputError, naming the file or flag, on anything that cannot be replayed."""
    flags = {"--sessions": ns.sessions, "--since": ns.since, "--speed": ns.speed,
             "--limit": ns.limit}  # fmt: skip
    given = [f for f, v in flags.items() if v is not None]
    if ns.profile != "replay":
        if given:
            raise InputError(f"{', '.join(given)}: only `harness load replay` takes them")
        return None
    if ns.sessions is None:
        raise InputError("harness load replay: --sessions PATH|router-logs is required")
    if ns.speed is not None and not ns.speed > 0:
        raise InputError(f"--speed {ns.speed}: must be above 0 (2 replays twice as fast)")
    if ns.processes != 1 or ns.workers or ns.worker is not None:
        raise InputError("harness load replay runs one load process: --processes, --workers "
                         "and --worker are for the profiles")  # fmt: skip
    if ns.duration is not None or ns.users is not None:
        raise InputError("harness load replay: --duration and --users come from the log "
                         "(its time span over --speed, its concurrency)")  # fmt: skip
    from harness.report.replay import select
    from harness.report.sessions import parse_since

    log = session_log(ns.sessions, ns.compose)
    if ns.since:
        lines = len(log.records)
        log = log.window(datetime.now(UTC) - parse_since(ns.since))
        if lines and not log.records:
            raise InputError(f"{log.source}: none of its {lines:,} lines is from the last "
                             f"{ns.since} (--since)")  # fmt: skip
    max_requests = settings.typed.replay.max_requests
    return select(log, limit=ns.limit, max_requests=max_requests, since=ns.since)


def session_log(where: str, compose: Path) -> Any:
    """A session log file, a run directory's (the twin's logs/ai-router-session.jsonl), or
    `router-logs`: the compose project's router-logs volume, read as `harness sessions` reads
    it (its mount point, else a copy out of the ai-router container)."""
    from harness.compose import load_stack
    from harness.report.sessions import compose_location, in_run_dir, read_log, volume_log

    if where == ROUTER_LOGS:
        spec = load_stack(compose)
        volume, inner, service = compose_location(spec)
        return volume_log(spec.project, volume, inner, service)
    path = Path(where)
    if path.is_dir():
        found = in_run_dir(path)
        if found is None:
            raise InputError(f"--sessions {where}: no session log in it (looked for "
                             "logs/ai-router-session.jsonl)")  # fmt: skip
        path = found
    if not path.is_file():
        raise InputError(f"--sessions {where}: no such file or run directory")
    return read_log(path)


def router_session_log(stack: Stack) -> Any:
    """The replayed stack's own session log, where the harness knows its file (the twin)."""
    from harness.report.sessions import read_log

    log = stack.router.log_path
    path = log.with_name(f"{stack.router.name}-session.jsonl") if log else None
    return read_log(path) if path is not None and path.is_file() else None


def run_replay(
    stack: Stack,
    logged: list[LoggedRequest],
    out_root: Path,
    *,
    speed: float,
    settings: Settings,
    source: str,
    since: str | None,
    progress: Any,
) -> LoadResult:
    from harness.load.prompts import chat_prompts
    from harness.load.replay import LEAD_S, PLAN, ROUTES, SENT_LOG, build_plan, write_plan
    from harness.load.runner import HARNESS_ROOT, chars_per_token, run_profile
    from harness.report.replay import read_sent, replay_report

    searches = sum(r.route == "search" for r in logged)
    if searches and not stack.search_allowed:
        from harness.stack.base import PAID_SEARCH_REFUSED

        raise InputError(f"{source}: {searches:,} search-routed requests to replay, and "
                         f"{PAID_SEARCH_REFUSED}")  # fmt: skip
    questions = {route: chat_prompts(route) for route in ROUTES}
    plan = build_plan(logged, questions, speed=speed, chars_per_token=chars_per_token(stack))
    out = out_root / "replay"
    write_plan(plan, out / PLAN)
    progress(
        f"replaying {len(plan.requests):,} requests of {source} at speed {speed:g} "
        f"({plan.duration_s:.0f} s, {plan.users} users) against {stack.entry.url}"
    )
    result = run_profile(
        stack, "replay", out_root, duration_s=plan.duration_s + LEAD_S, users=plan.users,
        locustfile_path=HARNESS_ROOT / "tests" / "load" / "locustfile_replay.py",
        max_dispatch_delay_p95_s=settings.typed.load.max_dispatch_delay_p95_s,
    )  # fmt: skip
    section = replay_report(
        logged, result.records, read_sent(out / SENT_LOG), router_session_log(stack),
        {q.index: q.turn for q in plan.requests},
    )  # fmt: skip
    section = {"source": source, "since": since, "speed": speed, "users": plan.users, **section}
    result.summary["replay"] = section
    (result.out_dir / "stats.json").write_text(json.dumps(result.summary, indent=2, default=str))
    return result


def add_replay_arguments(load: argparse.ArgumentParser) -> None:
    from harness.cli.common import positive_int

    load.add_argument(
        "--sessions", default=None, metavar="PATH|router-logs",
        help="replay: the ai-router's session log, a file or a run directory, or router-logs "
        "(the log `harness sessions` reads: the stack's router-logs volume)",
    )  # fmt: skip
    load.add_argument(
        "--since", default=None, metavar="DURATION",
        help="replay: only the log's requests of the last DURATION, e.g. 24h, 30m",
    )  # fmt: skip
    load.add_argument(
        "--speed", type=float, default=None, metavar="N",
        help="replay: arrivals N times faster than logged (default 1; above 0)",
    )  # fmt: skip
    load.add_argument(
        "--limit", type=positive_int, default=None, metavar="N",
        help="replay: the log's first N requests (a log over [replay] max_requests is "
        "refused without it)",
    )  # fmt: skip
