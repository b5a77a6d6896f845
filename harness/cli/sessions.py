"""`harness sessions`: the ai-router's session log, summarised."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.errors import InputError


def session_log(path: str | None, compose: Path, settings: Any) -> Any:
    """A path (file or run directory), else targets.attach.router_session_log, else the log of
    the twin `harness up` started when targets.attach.router_url is its router, else the compose
    project's router-logs volume."""
    from harness.compose import load_stack
    from harness.report.sessions import compose_location, in_run_dir, read_log, volume_log

    if path:
        p = Path(path)
        if p.is_dir():
            found = in_run_dir(p) or (p / "session.jsonl")
            if not found.is_file():
                raise InputError(
                    f"{p}: no session log in it (looked for logs/ai-router-session.jsonl)"
                )
            p = found
        return read_log(p)
    attach = settings.typed.target("attach")
    configured = attach.router_session_log
    if configured:
        return read_log(Path(configured))
    from harness.stack.state import twin_session_log

    twin = twin_session_log(attach.url("router"))
    if twin is not None:
        return read_log(twin)
    spec = load_stack(compose)
    volume, inner, service = compose_location(spec)
    return volume_log(spec.project, volume, inner, service)


def primary_max_model_len(compose: Path) -> int | None:
    from harness.compose import load_stack
    from harness.errors import HarnessError

    try:
        engine = load_stack(compose).primary.engine
    except HarnessError:
        return None
    return engine.max_model_len if engine else None


def cmd_sessions(ns: argparse.Namespace) -> int:
    from harness.config import load_settings
    from harness.report.sessions import parse_since, render_text, summarize

    settings = load_settings(ns.config)
    log = session_log(ns.path, ns.compose, settings)
    if ns.since:
        log = log.window(datetime.now(UTC) - parse_since(ns.since))
    summary = summarize(log, max_model_len=primary_max_model_len(ns.compose), since=ns.since)
    print(json.dumps(summary.to_dict(), indent=2) if ns.json else render_text(summary))
    return 0


def add_sessions(
    run_dir: Path, target: str, compose: Path, config: Path | None, *, run_only: bool = False
) -> str:
    """Put the session log's summary in the run's record (telemetry.sessions): the twin's own
    log, or the live stack's (attach) over the last day, or with `run_only` over the run's own
    time. Returns the summary as text, or why there is none."""
    from harness.config import load_settings
    from harness.errors import HarnessError
    from harness.report.schema import load_record
    from harness.report.sessions import (
        in_run_dir,
        parse_since,
        parse_ts,
        read_log,
        render_text,
        summarize,
    )

    doc = load_record(run_dir)
    since = None
    try:
        own = in_run_dir(run_dir)
        if own is not None:
            log = read_log(own)
        elif target == "attach":
            log = session_log(None, compose, load_settings(config))
            if run_only:
                since = str(doc["started_at"])
                log = log.window(
                    parse_ts(doc["started_at"]), parse_ts(doc.get("finished_at") or "")
                )
            else:
                since = "24h"
                log = log.window(datetime.now(UTC) - parse_since(since))
        else:
            return f"no session log for a {target} run"
    except HarnessError as exc:
        return f"no session summary: {exc}"
    summary = summarize(log, max_model_len=primary_max_model_len(compose), since=since)
    doc.setdefault("telemetry", {})["sessions"] = summary.to_dict()
    tmp = run_dir / "record.json.tmp"
    tmp.write_text(json.dumps(doc, indent=2, default=str))
    tmp.replace(run_dir / "record.json")
    return render_text(summary)
