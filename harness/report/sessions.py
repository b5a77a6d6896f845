"""The ai-router's session log, summed up: route mix, fallbacks and their causes, classifier
latency, conversation lengths against max-model-len, and errors.

The log is JSON lines, one per request (`infra/ai-router/ai_router/session_log.py`): `ts` (the
request's start, UTC), `path`, `route`, `reason` (`classified`, `classified:trimmed-history` or
`fallback:<cause>`), `classifier_ms`, `status`, `prompt_tokens`, `completion_tokens`, `error`,
and a chat's conversation shape: `conversation` (a salted key its turns share), `turn` (user
messages so far), `messages`, `history_chars`, `history_tokens` (where the router counted them).
Health checks are logged too; they count as health checks, never as requests.

Where a log comes from: a path, a twin run directory (`logs/ai-router-session.jsonl`), or the
compose project's `router-logs` volume (its mount point when this user can read it, else a copy
out of the ai-router container).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from harness.compose import StackSpec
from harness.errors import InputError
from harness.load.stats import percentile

CLASSIFIED = "classified"
TRIMMED = "classified:trimmed-history"
FALLBACK = "fallback:"
CONTEXT_TOO_LONG = "fallback:context_too_long"
HEALTH = "/health"
TWIN_LOG = Path("logs") / "ai-router-session.jsonl"
# Conversation lengths are counted at these fractions of max-model-len.
LENGTH_MARKS = (0.5, 0.9, 1.0)
PERCENTILES = (50, 95, 99)
_SINCE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str) -> timedelta:
    """`--since`: 30m, 24h, 7d, 1w."""
    m = _SINCE.match(text.strip())
    if not m:
        raise InputError(f"--since {text!r}: expected a duration like 30m, 24h or 7d")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])


def parse_ts(text: str) -> datetime | None:
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


@dataclass(frozen=True)
class SessionLog:
    """The records of one log, and what could not be read as one."""

    source: str
    records: tuple[dict[str, Any], ...]
    bad_lines: tuple[int, ...] = ()  # 1-based line numbers

    def window(self, start: datetime | None, end: datetime | None = None) -> SessionLog:
        """The records whose `ts` falls in [start, end]; records without a readable `ts` drop
        out whenever a bound is given."""
        if start is None and end is None:
            return self
        kept = []
        for r in self.records:
            ts = parse_ts(str(r.get("ts", "")))
            if ts is None or (start and ts < start) or (end and ts > end):
                continue
            kept.append(r)
        return SessionLog(self.source, tuple(kept), self.bad_lines)


def parse_lines(lines: Iterable[str], source: str) -> SessionLog:
    records, bad = [], []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            bad.append(n)  # a line cut by a crash mid-write, or not a session log at all
            continue
        if isinstance(doc, dict):
            records.append(doc)
        else:
            bad.append(n)
    return SessionLog(source, tuple(records), tuple(bad))


def read_log(path: Path) -> SessionLog:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the session log: {exc.strerror}") from None
    return parse_lines(text.splitlines(), str(path))


@dataclass(frozen=True)
class SessionSummary:
    source: str
    lines: int
    bad_lines: int
    first_ts: str | None
    last_ts: str | None
    health_checks: int
    requests: int
    paths: dict[str, int]
    routes: dict[str, int]
    reasons: dict[str, int]
    classified: int  # requests with a routing decision
    fallbacks: int
    fallback_causes: dict[str, int]
    classifier_ms: dict[str, float | None]
    conversation: dict[str, Any]
    status: dict[str, int]
    errors: dict[str, int]
    since: str | None = None
    shape: dict[str, Any] = field(default_factory=dict)

    @property
    def fallback_rate(self) -> float | None:
        return self.fallbacks / self.classified if self.classified else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "since": self.since,
            "lines": self.lines,
            "bad_lines": self.bad_lines,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "health_checks": self.health_checks,
            "requests": self.requests,
            "paths": self.paths,
            "routes": self.routes,
            "reasons": self.reasons,
            "classified": self.classified,
            "fallbacks": self.fallbacks,
            "fallback_rate": None if self.fallback_rate is None else round(self.fallback_rate, 6),
            "fallback_causes": self.fallback_causes,
            "classifier_ms": self.classifier_ms,
            "conversation": self.conversation,
            "status": self.status,
            "errors": self.errors,
            "shape": self.shape,
        }


def _sorted(counter: Counter[str]) -> dict[str, int]:
    return dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def conversation_lengths(
    records: Sequence[Mapping[str, Any]], max_model_len: int | None
) -> dict[str, Any]:
    """Prompt + completion tokens of the requests the primary served (route `local`: its own
    tokenizer counted them), against max-model-len."""
    sizes = []
    for r in records:
        prompt = _int(r.get("prompt_tokens"))
        if r.get("route") == "local" and prompt is not None:
            sizes.append(prompt + (_int(r.get("completion_tokens")) or 0))
    out: dict[str, Any] = {
        "counted": len(sizes),
        "max_model_len": max_model_len,
        **{f"p{p}": percentile(sizes, p) for p in (50, 95)},
        "max": max(sizes) if sizes else None,
        "trimmed_history": sum(r.get("reason") == TRIMMED for r in records),
        "too_long": sum(r.get("reason") == CONTEXT_TOO_LONG for r in records),
    }
    if max_model_len:
        out["at_or_above"] = {
            f"{mark:g}": sum(s >= mark * max_model_len for s in sizes) for mark in LENGTH_MARKS
        }
    return out


def _distribution(values: Sequence[int]) -> dict[str, Any]:
    return {
        "n": len(values),
        **{f"p{p}": percentile([float(v) for v in values], p) for p in (50, 95)},
        "max": max(values) if values else None,
    }


def _length(r: Mapping[str, Any]) -> tuple[str, int] | None:
    """A request's history size and its unit: the router's token count, else the primary's
    prompt tokens (route local), else characters."""
    for unit, key in (("tokens", "history_tokens"), ("tokens", "prompt_tokens")):
        n = _int(r.get(key))
        if n is not None and (key == "history_tokens" or r.get("route") == "local"):
            return unit, n
    chars = _int(r.get("history_chars"))
    return ("chars", chars) if chars is not None else None


def conversation_shapes(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Conversations by the session log's salted keys: how many turns each reached (its
    highest turn index), the turn indexes of the requests, and each conversation's length at
    its last logged turn, in tokens where the router or the primary counted them and in
    characters where only those are known (two distributions, never mixed)."""
    keyed = [r for r in records if isinstance(r.get("conversation"), str)]
    turns_by_conv: dict[str, int] = {}
    last: dict[str, Mapping[str, Any]] = {}
    for r in keyed:
        key, turn = str(r["conversation"]), _int(r.get("turn")) or 0
        if turn >= turns_by_conv.get(key, 0):
            turns_by_conv[key], last[key] = turn, r
    lengths: dict[str, list[int]] = {"tokens": [], "chars": []}
    for r in last.values():
        found = _length(r)
        if found:
            lengths[found[0]].append(found[1])
    request_turns = [t for r in keyed if (t := _int(r.get("turn"))) is not None]
    per_conv = list(turns_by_conv.values())
    return {
        "requests": len(keyed),
        "conversations": len(turns_by_conv),
        "turns_per_conversation": _distribution(per_conv),
        "turns_per_conversation_counts": {str(n): per_conv.count(n) for n in sorted(set(per_conv))},
        "request_turn_index": _distribution(request_turns),
        "multi_turn_conversations": sum(n > 1 for n in per_conv),
        "length_tokens": _distribution(lengths["tokens"]),
        "length_chars": _distribution(lengths["chars"]),
    }


def summarize(
    log: SessionLog, *, max_model_len: int | None = None, since: str | None = None
) -> SessionSummary:
    records = log.records
    health = [r for r in records if r.get("path") == HEALTH]
    requests = [r for r in records if r.get("path") != HEALTH]
    decided = [r for r in requests if isinstance(r.get("reason"), str)]
    fallbacks = [r for r in decided if str(r["reason"]).startswith(FALLBACK)]
    latencies = [float(ms) for r in decided if (ms := _int(r.get("classifier_ms"))) is not None]
    stamps = sorted(str(r["ts"]) for r in records if parse_ts(str(r.get("ts", ""))) is not None)
    status: Counter[str] = Counter()
    for r in requests:
        code = _int(r.get("status"))
        status["none" if code is None else f"{code // 100}xx"] += 1
    return SessionSummary(
        source=log.source,
        since=since,
        lines=len(records) + len(log.bad_lines),
        bad_lines=len(log.bad_lines),
        first_ts=stamps[0] if stamps else None,
        last_ts=stamps[-1] if stamps else None,
        health_checks=len(health),
        requests=len(requests),
        paths=_sorted(Counter(f"{r.get('method', '?')} {r.get('path', '?')}" for r in requests)),
        routes=_sorted(Counter(str(r["route"]) for r in decided if r.get("route"))),
        reasons=_sorted(Counter(str(r["reason"]) for r in decided)),
        classified=len(decided),
        fallbacks=len(fallbacks),
        fallback_causes=_sorted(Counter(str(r["reason"])[len(FALLBACK) :] for r in fallbacks)),
        classifier_ms={
            "n": len(latencies),
            **{f"p{p}": percentile(latencies, p) for p in PERCENTILES},
            "max": max(latencies) if latencies else None,
        },
        conversation=conversation_lengths(requests, max_model_len),
        status=dict(sorted(status.items())),
        errors=_sorted(Counter(str(r["error"]) for r in requests if r.get("error"))),
        shape=conversation_shapes(requests),
    )


def _pct(n: int, of: int) -> str:
    return f"{n:,} ({n / of:.1%})" if of else f"{n:,}"


def _counts(d: Mapping[str, int], of: int | None = None) -> str:
    return ", ".join(f"{k} {_pct(v, of) if of else f'{v:,}'}" for k, v in d.items()) or "none"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def render_text(s: SessionSummary) -> str:
    window = f" since {s.since}" if s.since else ""
    span = f", {s.first_ts} to {s.last_ts}" if s.first_ts else ""
    bad = f", {s.bad_lines} unreadable" if s.bad_lines else ""
    lines = [
        f"session log {s.source}{window}: {s.lines:,} line(s){bad}{span}",
        f"requests: {s.requests:,} ({_counts(s.paths)}); health checks {s.health_checks:,}",
        f"routes: {_counts(s.routes, s.classified)}",
    ]
    rate = "-" if s.fallback_rate is None else f"{s.fallback_rate:.2%}"
    lines.append(
        f"fallbacks: {s.fallbacks:,} of {s.classified:,} routing decisions ({rate})"
        + (f": {_counts(s.fallback_causes)}" if s.fallbacks else "")
    )
    c = s.classifier_ms
    lines.append(
        f"classifier latency: p50 {_ms(c['p50'])} ms, p95 {_ms(c['p95'])} ms, "
        f"p99 {_ms(c['p99'])} ms, max {_ms(c['max'])} ms (n={c['n']:,})"
    )
    v = s.conversation
    mml = v.get("max_model_len")
    of = f" of max-model-len {mml:,}" if mml else ""
    marks = v.get("at_or_above") or {}
    marked = ", ".join(f">= {float(k):.0%}: {n:,}" for k, n in marks.items())
    lines.append(
        f"conversation length (local route, prompt + completion tokens{of}): "
        f"p50 {_ms(v['p50'])}, p95 {_ms(v['p95'])}, max {_ms(v['max'])} (n={v['counted']:,})"
        + (f"; {marked}" if marked else "")
        + f"; classified on trimmed history {v['trimmed_history']:,}, too long for the stack "
        f"{v['too_long']:,}"
    )
    lines.extend(_shape_lines(s.shape))
    errors = sum(s.errors.values())
    lines.append(f"errors: {errors:,} ({_counts(s.errors)}); status {_counts(s.status)}")
    return "\n".join(lines)


def _dist(d: Mapping[str, Any]) -> str:
    return f"p50 {_ms(d['p50'])}, p95 {_ms(d['p95'])}, max {_ms(d['max'])} (n={d['n']:,})"


def _shape_lines(shape: Mapping[str, Any]) -> list[str]:
    if not shape.get("conversations"):
        return ["conversations: none keyed (a router that logs no conversation shape)"]
    counts = ", ".join(
        f"{n} turn{'s' if n != '1' else ''}: {c:,}"
        for n, c in shape["turns_per_conversation_counts"].items()
    )
    out = [
        f"conversations: {shape['conversations']:,} over {shape['requests']:,} requests, "
        f"{shape['multi_turn_conversations']:,} multi-turn; turns per conversation "
        f"{_dist(shape['turns_per_conversation'])} ({counts}); request turn index "
        f"{_dist(shape['request_turn_index'])}"
    ]
    parts = [
        f"{unit} {_dist(shape[f'length_{unit}'])}"
        for unit in ("tokens", "chars")
        if shape[f"length_{unit}"]["n"]
    ]
    out.append("conversation length at its last turn: " + ("; ".join(parts) or "unknown"))
    return out


# -- where the log is -------------------------------------------------------------------------


def in_run_dir(path: Path) -> Path | None:
    """The twin's session log inside a run directory (or beside its record.json)."""
    folder = path.parent if path.is_file() and path.name == "record.json" else path
    candidate = folder / TWIN_LOG
    return candidate if candidate.is_file() else None


def compose_location(spec: StackSpec) -> tuple[str, str, str]:
    """(volume, path inside it, service) of the router's session log as the compose file
    declares it: ROUTER_SESSION_LOG under one of the router's named volumes."""
    router = spec.role("router")
    log = router.environment.get("ROUTER_SESSION_LOG", "")
    for mount in router.volumes:
        source, _, target = mount.partition(":")
        target = target.split(":", 1)[0].rstrip("/")
        if log.startswith(target + "/") and "/" not in source:
            return source, log[len(target) + 1 :], router.name
    raise InputError(
        f"{spec.path}: service {router.name!r}: ROUTER_SESSION_LOG ({log or 'unset'}) is not on "
        "a named volume; pass the session log's path"
    )


def volume_log(project: str, volume: str, path_in_volume: str, service: str) -> SessionLog:
    """The session log from a compose project's named volume: read at the volume's mount
    point when this user may, else copied out of the service's container."""
    import io
    import tarfile

    from docker.errors import DockerException
    from requests.exceptions import RequestException

    from harness.stack.containers.client import docker_client

    client = docker_client(timeout_s=30)
    name = f"{project}_{volume}"
    tried = []
    try:
        mountpoint = Path(client.volumes.get(name).attrs["Mountpoint"])
    except (DockerException, RequestException) as exc:
        raise InputError(
            f"no Docker volume {name} ({type(exc).__name__}): the stack's {service} has not run "
            "on this machine; pass the session log's path"
        ) from None
    target = mountpoint / path_in_volume
    try:
        return parse_lines(target.read_text(errors="replace").splitlines(), str(target))
    except OSError as exc:
        tried.append(f"{target}: {exc.strerror}")
    containers = client.containers.list(
        all=True,
        filters={"label": [f"com.docker.compose.project={project}",
                           f"com.docker.compose.service={service}"]},
    )  # fmt: skip
    for c in containers:
        for m in c.attrs.get("Mounts", []):
            if m.get("Name") != name:
                continue
            inside = f"{m['Destination'].rstrip('/')}/{path_in_volume}"
            try:
                stream, _ = c.get_archive(inside)
                with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
                    member = tar.extractfile(tar.getmembers()[0])
                    assert member is not None
                    text = member.read().decode("utf-8", errors="replace")
            except (DockerException, RequestException, tarfile.TarError, IndexError) as exc:
                tried.append(f"{c.name}:{inside}: {type(exc).__name__}")
                continue
            return parse_lines(text.splitlines(), f"{c.name}:{inside}")
    raise InputError(
        f"the session log in volume {name} could not be read ("
        + ("; ".join(tried) or f"no {service} container mounts it")
        + "); pass its path, or run as a user that can read the volume"
    )
