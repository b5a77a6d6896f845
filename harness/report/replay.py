"""`harness load replay`: the session log's requests as a workload, and the replay set beside
the log.

The usable lines of a session log are its routed chat requests (POST /v1/chat/completions with
route local or search and a readable `ts`); health checks, /v1/route, unauthenticated and
unrouted requests are not replayed. The report pairs each replayed request with its logged line
by the plan index it carries (SENT_LOG, never the text): the replay's end-to-end latency beside
the log's `duration_ms` (both answered), per route the median and p95 of each and their ratio,
and the reproduction check: request count, route mix and turn distribution of the replay
against the log, each within REPRODUCTION_TOLERANCE (the count relative to the log's, each
route's and each turn index's share as a difference in share). The replay's routes are the
router's (X-Route); its turns are the router's own count from its session log where the
replayed stack's log is at hand, else the turns the plan sent.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.errors import InputError
from harness.load.records import RequestRecord
from harness.load.replay import ROUTES, LoggedRequest
from harness.load.stats import percentile
from harness.report.sessions import SessionLog, parse_ts
from harness.units import number, percent

CHAT_PATH = "/v1/chat/completions"
REPRODUCTION_TOLERANCE = 0.05
# Rows of the per-request table in report.md; record.json holds every one.
MD_REQUEST_ROWS = 40


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def logged_requests(log: SessionLog) -> list[LoggedRequest]:
    """The usable lines of `log`, by start time, indexed in that order."""
    usable = []
    for n, r in enumerate(log.records):
        ts = parse_ts(str(r.get("ts", "")))
        route = r.get("route")
        if r.get("path") != CHAT_PATH or route not in ROUTES or ts is None:
            continue
        if r.get("method", "POST") != "POST":
            continue
        usable.append((ts, n, r))
    usable.sort(key=lambda t: (t[0], t[1]))
    if not usable:
        return []
    first = usable[0][0]
    out = []
    for index, (ts, n, r) in enumerate(usable):
        key = r.get("conversation")
        keyed = isinstance(key, str) and key
        out.append(
            LoggedRequest(
                index=index,
                offset_s=(ts - first).total_seconds(),
                route=str(r["route"]),
                conversation=str(key) if keyed else f"line-{n}",
                turn=max(1, _int(r.get("turn")) or 1) if keyed else 1,
                messages=max(1, _int(r.get("messages")) or 1) if keyed else 1,
                history_chars=_int(r.get("history_chars")),
                history_tokens=_int(r.get("history_tokens")),
                prompt_tokens=_int(r.get("prompt_tokens")),
                completion_tokens=_int(r.get("completion_tokens")),
                duration_ms=_int(r.get("duration_ms")),
                status=_int(r.get("status")),
            )
        )
    return out


def select(
    log: SessionLog, *, limit: int | None, max_requests: int, since: str | None = None
) -> list[LoggedRequest]:
    """The requests to replay, or InputError naming the file and what to do."""
    where = log.source + (f" (--since {since})" if since else "")
    if not log.records and not log.bad_lines:
        raise InputError(f"{where}: the session log is empty; nothing to replay")
    logged = logged_requests(log)
    if not logged:
        raise InputError(
            f"{where}: no usable line in {len(log.records) + len(log.bad_lines):,} (a routed "
            f"POST {CHAT_PATH} with a readable ts); nothing to replay"
        )
    if limit is not None:
        return logged[:limit]
    if len(logged) > max_requests:
        raise InputError(
            f"{where}: {len(logged):,} requests to replay, more than [replay] max_requests "
            f"({max_requests:,}); replay the first N with --limit N, or raise max_requests"
        )
    return logged


def read_sent(path: Path) -> dict[str, dict[str, Any]]:
    """SENT_LOG: harness request id -> {"router_id", "index"}."""
    out: dict[str, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                doc = json.loads(line)
                out[str(doc["request_id"])] = doc
    return out


def _shares(counter: Mapping[str, int]) -> dict[str, float]:
    total = sum(counter.values())
    return {k: v / total for k, v in sorted(counter.items())} if total else {}


def _mix_check(name: str, log: Counter[str], replay: Counter[str]) -> dict[str, Any]:
    a, b = _shares(log), _shares(replay)
    keys = sorted(set(a) | set(b), key=lambda k: (len(k), k))
    diff = max((abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in keys), default=0.0)
    return {
        "check": name,
        "log": {k: log.get(k, 0) for k in keys},
        "replay": {k: replay.get(k, 0) for k in keys},
        "max_share_difference": round(diff, 6),
        "within": diff <= REPRODUCTION_TOLERANCE,
    }


def reproduction(
    logged: Sequence[LoggedRequest],
    replay_routes: Sequence[str | None],
    replay_turns: Sequence[int],
) -> list[dict[str, Any]]:
    """The three checks: request count, route mix, turn distribution (module docstring)."""
    n_log, n_replay = len(logged), len(replay_turns)
    rel = (n_replay - n_log) / n_log if n_log else 0.0
    count = {
        "check": "requests",
        "log": n_log,
        "replay": n_replay,
        "relative_difference": round(rel, 6),
        "within": abs(rel) <= REPRODUCTION_TOLERANCE,
    }
    routes = _mix_check(
        "route mix",
        Counter(r.route for r in logged),
        Counter(r for r in replay_routes if r),
    )
    turns = _mix_check(
        "turn distribution",
        Counter(str(r.turn) for r in logged),
        Counter(str(t) for t in replay_turns),
    )
    return [count, routes, turns]


def _stats(values: Sequence[float]) -> dict[str, float | None]:
    return {"p50": percentile(values, 50), "p95": percentile(values, 95)}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a is not None and b else None


def replay_report(
    logged: Sequence[LoggedRequest],
    records: Sequence[RequestRecord],
    sent: Mapping[str, Mapping[str, Any]],
    router_log: SessionLog | None = None,
    plan_turns: Mapping[int, int] | None = None,
) -> dict[str, Any]:
    """The record's `replay` section. `sent`: SENT_LOG by harness request id; `router_log`:
    the replayed stack's own session log, for the turns the router counted; `plan_turns`: the
    turn each plan index sent, where the router's count is not at hand."""
    by_index = {r.index: r for r in logged}
    router_turns: dict[str, int] = {}
    for line in router_log.records if router_log else ():
        turn = _int(line.get("turn"))
        if isinstance(line.get("request_id"), str) and turn is not None:
            router_turns[str(line["request_id"])] = turn
    rows: list[dict[str, Any]] = []
    routes: list[str | None] = []
    turns: list[int] = []
    turn_source: Counter[str] = Counter()
    for rec in records:
        info = sent.get(rec.request_id or "")
        if info is None or info.get("index") not in by_index:
            continue
        log = by_index[int(info["index"])]
        turn = router_turns.get(str(info.get("router_id")))
        turn_source["router" if turn is not None else "plan"] += 1
        if turn is None:
            turn = (plan_turns or {}).get(log.index, log.turn)
        routes.append(rec.route)
        turns.append(turn)
        rows.append(
            {
                "index": log.index,
                "route_logged": log.route,
                "route_replayed": rec.route,
                "turn": turn,
                "log_ms": log.duration_ms if log.status == 200 else None,
                "replay_ms": round(rec.e2e_s * 1000, 1) if rec.ok and rec.e2e_s else None,
                "prompt_tokens_logged": log.prompt_tokens,
                "prompt_tokens_replayed": rec.prompt_tokens,
            }
        )
    rows.sort(key=lambda r: r["index"])
    per_route = {}
    for route in sorted({log.route for log in logged}):
        pairs = [
            (r["log_ms"], r["replay_ms"])
            for r in rows
            if r["route_logged"] == route and r["log_ms"] is not None and r["replay_ms"]
        ]
        log_s, rep_s = _stats([p[0] for p in pairs]), _stats([p[1] for p in pairs])
        per_route[route] = {
            "pairs": len(pairs),
            "log_ms": log_s,
            "replay_ms": rep_s,
            "ratio_p50": _ratio(rep_s["p50"], log_s["p50"]),
            "ratio_p95": _ratio(rep_s["p95"], log_s["p95"]),
        }
    checks = reproduction(logged, routes, turns)
    # The synthesised lengths, as the primary counted them both times (route local, answered).
    counted = [
        (r["prompt_tokens_logged"], r["prompt_tokens_replayed"])
        for r in rows
        if r["route_logged"] == r["route_replayed"] == "local"
        and r["prompt_tokens_logged"] is not None
        and r["prompt_tokens_replayed"] is not None
    ]
    return {
        "logged_requests": len(logged),
        "replayed_requests": len(rows),
        # Requests the router sent the way it had logged them (the mix can match without it).
        "same_route": sum(r["route_logged"] == r["route_replayed"] for r in rows),
        "turns_from": dict(turn_source),
        "reproduction": checks,
        "reproduced": all(c["within"] for c in checks),
        "latency_by_route": per_route,
        "prompt_tokens_local": {
            "requests": len(counted),
            "log": sum(a for a, _ in counted),
            "replay": sum(b for _, b in counted),
        },
        "requests": rows,
    }


def reproduction_problems(section: Mapping[str, Any]) -> list[str]:
    """One sentence per reproduction check outside its tolerance."""
    out = []
    for c in section.get("reproduction") or []:
        if c["within"]:
            continue
        if c["check"] == "requests":
            out.append(
                f"replay: {c['replay']:,} requests replayed of {c['log']:,} logged "
                f"({c['relative_difference']:+.1%}, more than {REPRODUCTION_TOLERANCE:.0%})"
            )
        else:
            out.append(
                f"replay: {c['check']} differs from the log's by {c['max_share_difference']:.1%} "
                f"of requests (more than {REPRODUCTION_TOLERANCE:.0%}): log {c['log']}, "
                f"replay {c['replay']}"
            )
    return out


def _mix(d: Mapping[str, int], label: str = "") -> str:
    total = sum(d.values())
    return ", ".join(
        f"{label}{k} {v:,} ({percent(v / total) if total else '-'})" for k, v in d.items()
    )


def reproduction_table(section: Mapping[str, Any]) -> list[str]:
    out = ["| check | log | replay | difference | within 5 % |", "|---|---|---|---|---|"]
    for c in section.get("reproduction") or []:
        if c["check"] == "requests":
            log, rep = f"{c['log']:,}", f"{c['replay']:,}"
            diff = percent(c["relative_difference"], signed=True)
        else:
            label = "turn " if c["check"] == "turn distribution" else ""
            log, rep = _mix(c["log"], label), _mix(c["replay"], label)
            diff = f"{percent(c['max_share_difference'])} of requests"
        out.append(f"| {c['check']} | {log} | {rep} | {diff} | {'yes' if c['within'] else 'NO'} |")
    return out


def latency_table(section: Mapping[str, Any]) -> list[str]:
    head = "| route | pairs | log p50 ms | replay p50 ms | ratio | log p95 ms | replay p95 ms "
    out = [head + "| ratio |", "|---|---|---|---|---|---|---|---|"]
    for route, s in (section.get("latency_by_route") or {}).items():
        lg, rp = s["log_ms"], s["replay_ms"]
        out.append(
            f"| {route} | {s['pairs']:,} | {number(lg['p50'])} | {number(rp['p50'])} | "
            f"{number(s['ratio_p50'])} | {number(lg['p95'])} | {number(rp['p95'])} | "
            f"{number(s['ratio_p95'])} |"
        )
    return out


def _prompt_line(section: Mapping[str, Any]) -> list[str]:
    p = section.get("prompt_tokens_local") or {}
    if not p.get("requests"):
        return []
    diff = (p["replay"] - p["log"]) / p["log"] if p["log"] else None
    return [
        f"Prompt tokens of the {p['requests']:,} requests the primary served both times (its own "
        f"count): log {p['log']:,}, replay {p['replay']:,} ({percent(diff, signed=True)}).",
        "",
    ]


def markdown(doc: Mapping[str, Any]) -> list[str]:
    """report.md's replay section, from record.json's load.replay.replay."""
    section = ((doc.get("load") or {}).get("replay") or {}).get("replay")
    if not section:
        return []
    source = section.get("source", "the session log")
    out = [
        "## Replay",
        "",
        f"{section['replayed_requests']:,} of {section['logged_requests']:,} requests of "
        f"`{source}` replayed at speed {section.get('speed')}; "
        + ("reproduced." if section["reproduced"] else "**not reproduced**.")
        + (
            f" {section['same_route']:,} of them took the route they had logged."
            if "same_route" in section
            else ""
        ),
        "",
        *reproduction_table(section),
        "",
        *_prompt_line(section),
        "End-to-end latency of the requests answered both times, the log's `duration_ms` "
        "beside the replay's:",
        "",
        *latency_table(section),
        "",
    ]
    rows = section.get("requests") or []
    if rows:
        out += [
            "| index | route (log / replay) | turn | log ms | replay ms |",
            "|---|---|---|---|---|",
        ]
        for r in rows[:MD_REQUEST_ROWS]:
            out.append(
                f"| {r['index']} | {r['route_logged']} / {r['route_replayed'] or '-'} | "
                f"{r['turn']} | {number(r['log_ms'])} | {number(r['replay_ms'])} |"
            )
        if len(rows) > MD_REQUEST_ROWS:
            out.append(
                f"\n{len(rows) - MD_REQUEST_ROWS:,} more in record.json (load.replay.replay)."
            )
        out.append("")
    return out
