"""Compare a run against a baseline, metric by metric, with the owner's tolerances.

Tolerances come from harness.toml `[compare]`, defaults in harness/config_schema.py:

    ttft_p95_growth = 0.15        p95 TTFT per profile and route may grow by this fraction...
    ttft_p95_slack_s = 0.05       ...or by this many seconds, whichever is larger (twin noise)
    itl_p95_growth = 0.25         the same for p95 inter-token latency
    itl_p95_slack_s = 0.02
    min_samples = 5               latencies with fewer samples on either side are not compared
                                  (per-request data: fewer than 20 requests, see _latency_rows)
    accuracy_drop = 0.02          routing accuracy may drop by this much (0.02 = 2 points)
    error_rate_increase = 0.0     a profile's error rate may rise by this much
    no_new_preemptions = ["steady"]   profiles where any preemption beyond the baseline's counts
    max_fallbacks = 0             fallbacks in acceptance (routing eval, long context, silent)
    max_long_context_failures = 0 long-context requests that did not pass
    kv_tokens_drop = 0.05         an engine's KV capacity may shrink by this fraction
    fallback_rate_increase = 0.02 the session log's fallback rate may rise this much (2 points)

Relative limits need both runs. Absolute limits (fallbacks, long-context failures) judge the
current run alone. A metric the other run lacks is "not compared": neither a pass nor a failure.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.config import Settings
from harness.config_schema import CompareSettings
from harness.load.records import RequestRecord, read_records
from harness.load.significance import MIN_REQUESTS, p95_regression
from harness.report import summary
from harness.report.comparable import unlike
from harness.report.compose_hash import compose_difference, compose_hash, missing_note
from harness.report.run_dir import reports_root
from harness.units import ms, points

OK = "ok"
REGRESSION = "regression"
NOT_COMPARED = "not compared"
CHANGED = "changed"  # what ran differs (an engine's vLLM version, an image): not a regression
# The profile ran with other settings (duration, users, shape) than the baseline's: its numbers
# are not judged against each other, neither a pass nor a regression.
NOT_COMPARABLE = "not comparable"
# The row of the compose file's sha256: which file each run was brought up from.
COMPOSE_METRIC = "stack.compose_sha256"


# The comparison's tolerances are the [compare] settings: one schema, one set of defaults
# (harness/config_schema.py), read once with the rest of harness.toml.
Tolerances = CompareSettings


def tolerances(settings: Settings) -> Tolerances:
    return settings.typed.compare


Value = float | str | None


@dataclass(frozen=True)
class Row:
    metric: str
    baseline: Value
    current: Value
    limit: float | None
    bound: str  # "max": current may not exceed limit; "min": may not fall below; "" none
    verdict: str
    note: str = ""

    @property
    def delta(self) -> float | None:
        if isinstance(self.baseline, int | float) and isinstance(self.current, int | float):
            return float(self.current) - float(self.baseline)
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "baseline": self.baseline,
            "current": self.current,
            "delta": self.delta,
            "limit": self.limit,
            "bound": self.bound,
            "verdict": self.verdict,
            "note": self.note,
        }


@dataclass(frozen=True)
class Comparison:
    current_id: str
    baseline_id: str
    rows: tuple[Row, ...] = field(default_factory=tuple)
    # The runs used other compose files and were not forced: "compose hash 1a2b… vs 3c4d…".
    unlike_compose: str = ""

    @property
    def regressions(self) -> list[Row]:
        return [r for r in self.rows if r.verdict == REGRESSION]

    @property
    def regression(self) -> bool:
        return bool(self.regressions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "current": self.current_id,
            "baseline": self.baseline_id,
            "regression": self.regression,
            "rows": [r.to_dict() for r in self.rows],
        }


def _missing(metric: str, b: Value, c: Value) -> Row:
    where = "baseline" if b is None else "current run"
    return Row(metric, b, c, None, "", NOT_COMPARED, f"missing in the {where}")


def upper(metric: str, b: float | None, c: float | None, allowed: float, note: str = "") -> Row:
    """Current may exceed the baseline by at most `allowed`."""
    if b is None or c is None:
        return _missing(metric, b, c)
    limit = b + allowed
    return Row(metric, b, c, limit, "max", REGRESSION if c > limit + 1e-12 else OK, note)


def lower(metric: str, b: float | None, c: float | None, allowed: float, note: str = "") -> Row:
    """Current may fall below the baseline by at most `allowed`."""
    if b is None or c is None:
        return _missing(metric, b, c)
    limit = b - allowed
    return Row(metric, b, c, limit, "min", REGRESSION if c < limit - 1e-12 else OK, note)


def absolute(metric: str, b: float | None, c: float | None, limit: float, note: str = "") -> Row:
    """The current run alone against a fixed ceiling; the baseline is shown, not needed."""
    if c is None:
        return _missing(metric, b, c)
    return Row(metric, b, c, limit, "max", REGRESSION if c > limit else OK, note)


def _per_request(run_dir: Path | None, profile: str, label: str) -> list[RequestRecord] | None:
    """The successful requests of one profile's route, from the run's requests.jsonl."""
    if run_dir is None:
        return None
    path = run_dir / "load" / profile / "requests.jsonl"
    if not path.is_file():
        return None
    return [r for r in read_records(path) if r.ok and r.label == label]


def _latency_rows(
    profile: str,
    bs: dict[str, Any] | None,
    cs: dict[str, Any] | None,
    tol: Tolerances,
    dirs: tuple[Path | None, Path | None] = (None, None),
) -> Iterator[Row]:
    labels = sorted(set(summary.labels(bs or {})) | set(summary.labels(cs or {})))
    specs = (
        ("ttft_s", tol.ttft_p95_growth, tol.ttft_p95_slack_s),
        ("itl_s", tol.itl_p95_growth, tol.itl_p95_slack_s),
    )
    for label in labels:
        base, cur = _per_request(dirs[0], profile, label), _per_request(dirs[1], profile, label)
        for metric, growth, slack in specs:
            name = f"load.{profile}.{label}.{metric.removesuffix('_s')}_p95_s"
            b = summary.pct(bs, label, metric) if bs else None
            c = summary.pct(cs, label, metric) if cs else None
            if b is None or c is None:
                yield _missing(name, b, c)
                continue
            allowed = max(b * growth, slack)
            if base is not None and cur is not None:
                if min(len(base), len(cur)) < MIN_REQUESTS:
                    note = f"n={len(base)}/{len(cur)} requests < {MIN_REQUESTS}"
                    yield Row(name, b, c, None, "", NOT_COMPARED, note)
                    continue
                bad, note = p95_regression(metric, base, cur, b, c, allowed)
                yield Row(name, b, c, b + allowed, "max", REGRESSION if bad else OK, note)
                continue
            n = min(
                summary.samples(bs or {}, label, metric), summary.samples(cs or {}, label, metric)
            )
            if n < tol.min_samples:
                note = f"n={n} < min_samples {tol.min_samples}"
                yield Row(name, b, c, None, "", NOT_COMPARED, note)
                continue
            yield upper(
                name,
                b,
                c,
                allowed,
                f"+{growth:.0%} or +{ms(slack)}, whichever is larger (summary p95s: no "
                "requests.jsonl on both sides)",
            )


def run_dirs_of(
    current: dict[str, Any], current_dir: Path, baseline: dict[str, Any], baseline_path: Path
) -> dict[str, Path]:
    """Where both runs' per-request data is: the current run's directory, and the baseline's
    when it was given as a run (its record.json), wherever that lives. A pinned baseline.json
    is a copy: its run is looked for under the reports root."""
    dirs = {str(current["run_id"]): Path(current_dir)}
    if baseline_path.name == "record.json":
        dirs[str(baseline["run_id"])] = baseline_path.parent
    return dirs


def _run_dir(doc: dict[str, Any], run_dirs: Mapping[str, Path] | None) -> Path | None:
    """Where a record's run left its files: given, else `<reports root>/runs/<run id>`."""
    if run_dirs and doc["run_id"] in run_dirs:
        return run_dirs[doc["run_id"]]
    path = reports_root() / "runs" / str(doc["run_id"])
    return path if path.is_dir() else None


def _load_rows(
    base: dict[str, Any],
    cur: dict[str, Any],
    tol: Tolerances,
    run_dirs: Mapping[str, Path] | None = None,
    force: bool = False,
) -> Iterator[Row]:
    bp, cp = summary.profiles(base), summary.profiles(cur)
    for profile in sorted(set(bp) | set(cp)):
        rows = _profile_rows(profile, base, cur, tol, run_dirs)
        bs, cs = bp.get(profile), cp.get(profile)
        why = unlike(base, cur, bs, cs) if bs is not None and cs is not None else ""
        if not why:
            yield from rows
        elif force:
            yield from (replace(r, note=f"{r.note}; forced: {why}".lstrip("; ")) for r in rows)
        else:
            yield from (replace(r, verdict=NOT_COMPARABLE, note=why) for r in rows)


def _profile_rows(
    profile: str,
    base: dict[str, Any],
    cur: dict[str, Any],
    tol: Tolerances,
    run_dirs: Mapping[str, Path] | None = None,
) -> Iterator[Row]:
    bp, cp = summary.profiles(base), summary.profiles(cur)
    dirs = (_run_dir(base, run_dirs), _run_dir(cur, run_dirs))
    bs, cs = bp.get(profile), cp.get(profile)
    yield upper(
        f"load.{profile}.error_rate",
        _num(bs, "error_rate"),
        _num(cs, "error_rate"),
        tol.error_rate_increase,
    )
    yield from _latency_rows(profile, bs, cs, tol, dirs)
    if profile not in tol.no_new_preemptions:
        return
    engines = set((bs or {}).get("engines", {})) | set((cs or {}).get("engines", {}))
    for engine in sorted(engines):
        yield upper(
            f"load.{profile}.{engine}.preemptions",
            _num((bs or {}).get("engines", {}).get(engine), "preemptions"),
            _num((cs or {}).get("engines", {}).get(engine), "preemptions"),
            0.0,
            "no new preemption",
        )


def _num(d: dict[str, Any] | None, key: str) -> float | None:
    if d is None or d.get(key) is None:
        return None
    return float(d[key])


def _status_row(base: dict[str, Any], cur: dict[str, Any]) -> Row:
    b, c = base["status"], cur["status"]
    bad = b == "passed" and c != "passed"
    return Row(
        "run.status",
        b,
        c,
        None,
        "",
        REGRESSION if bad else OK,
        "the baseline passed, this run did not" if bad else "",
    )


def _acceptance_rows(base: dict[str, Any], cur: dict[str, Any], tol: Tolerances) -> Iterator[Row]:
    br, cr = summary.routing(base), summary.routing(cur)
    yield lower(
        "routing.accuracy",
        _num(br, "accuracy"),
        _num(cr, "accuracy"),
        tol.accuracy_drop,
        f"may drop {points(tol.accuracy_drop)}",
    )
    bf, cf = summary.fallbacks(base), summary.fallbacks(cur)
    for key in ("routing", "long_context", "long_context_silent"):
        yield absolute(f"fallbacks.{key}", _f(bf.get(key)), _f(cf.get(key)), tol.max_fallbacks)
    brows, crows = summary.long_context(base), summary.long_context(cur)
    bfail = None if brows is None else sum(r.outcome not in summary.PASSING for r in brows)
    cfail = None if crows is None else sum(r.outcome not in summary.PASSING for r in crows)
    note = ""
    if crows:
        counts = summary.outcome_counts(crows)
        note = ", ".join(f"{n} {k}" for k, n in counts.items() if n and k not in summary.PASSING)
    yield absolute(
        "long_context.failures", _f(bfail), _f(cfail), tol.max_long_context_failures, note
    )
    bk = base.get("acceptance", {}).get("kv_capacity", {})
    ck = cur.get("acceptance", {}).get("kv_capacity", {})
    for engine in sorted(set(bk) | set(ck)):
        b = _num(bk.get(engine), "log_tokens")
        c = _num(ck.get(engine), "log_tokens")
        yield lower(
            f"kv_capacity.{engine}.tokens",
            b,
            c,
            (b or 0.0) * tol.kv_tokens_drop,
            f"may shrink {tol.kv_tokens_drop:.0%}",
        )


def _session_rows(base: dict[str, Any], cur: dict[str, Any], tol: Tolerances) -> Iterator[Row]:
    """The router's fallback rate over the run's session log (telemetry.sessions)."""
    b = base.get("telemetry", {}).get("sessions")
    c = cur.get("telemetry", {}).get("sessions")
    if b is None and c is None:
        return
    yield upper(
        "sessions.fallback_rate",
        _num(b, "fallback_rate"),
        _num(c, "fallback_rate"),
        tol.fallback_rate_increase,
        f"may rise {points(tol.fallback_rate_increase)}",
    )


def _stack_rows(base: dict[str, Any], cur: dict[str, Any]) -> Iterator[Row]:
    """What ran, side by side: the compose file's hash, each engine's vLLM version (GET
    /version) and each container's image ID. A difference is shown as changed; the metrics say
    whether it mattered."""
    bh, ch = compose_hash(base), compose_hash(cur)
    if bh is None or ch is None:
        yield Row(COMPOSE_METRIC, bh, ch, None, "", NOT_COMPARED, missing_note(base, cur))
    else:
        yield Row(COMPOSE_METRIC, bh, ch, None, "", OK if bh == ch else CHANGED)
    b, c = summary.what_ran(base), summary.what_ran(cur)
    for name in dict.fromkeys([*b, *c]):
        for key, what in (("version", "vllm_version"), ("image", "image_id")):
            bv, cv = b.get(name, {}).get(key), c.get(name, {}).get(key)
            metric = f"stack.{name}.{what}"
            if bv is None and cv is None:
                continue
            if bv is None or cv is None:
                yield _missing(metric, bv, cv)
            elif bv == cv:
                yield Row(metric, bv, cv, None, "", OK)
            else:
                yield Row(metric, bv, cv, None, "", CHANGED)


def _f(v: int | None) -> float | None:
    return None if v is None else float(v)


def _forced(r: Row, why: str) -> Row:
    """The row compared although the runs differ, saying how on the row."""
    if "forced: " in r.note:
        return replace(r, note=f"{r.note}, {why}")
    return replace(r, note=f"{r.note}; forced: {why}".lstrip("; "))


def _unlike_compose(r: Row, why: str) -> Row:
    """The row of runs that used other compose files: not comparable, with the difference
    (and any other difference of its profile) named."""
    note = f"{why}, {r.note}" if r.verdict == NOT_COMPARABLE else why
    return replace(r, verdict=NOT_COMPARABLE, note=note)


def compare(
    current: dict[str, Any],
    baseline: dict[str, Any],
    tol: Tolerances | None = None,
    *,
    run_dirs: Mapping[str, Path] | None = None,
    force: bool = False,
    compose_changed: bool = False,
) -> Comparison:
    """Every comparable metric of two validated records, as rows with a verdict each.

    Latency p95s are judged on the runs' per-request data (load/<profile>/requests.jsonl in
    each run's directory: `run_dirs` by run id, else `<reports root>/runs/<run id>`) where both
    runs have it; else on the summaries' p95s alone. A profile that ran with other settings
    than the baseline's (duration, users, target, shape) is "not comparable", its rows named
    with the difference, unless `force`. Runs that used other compose files are not comparable
    in any metric, unless `force` (each row then says so) or `compose_changed`: the compose
    file was changed on purpose (`harness tune`'s before and after), and the metrics are what
    judges the change; the stack.compose_sha256 row shows it changed."""
    tol = tol or Tolerances()
    rows = [_status_row(baseline, current)]
    rows += _acceptance_rows(baseline, current, tol)
    rows += _load_rows(baseline, current, tol, run_dirs, force)
    rows += _session_rows(baseline, current, tol)
    unlike_compose = "" if compose_changed else compose_difference(baseline, current)
    if unlike_compose and force:
        rows = [_forced(r, unlike_compose) for r in rows]
    elif unlike_compose:
        rows = [_unlike_compose(r, unlike_compose) for r in rows]
    rows += _stack_rows(baseline, current)
    return Comparison(
        current["run_id"],
        baseline["run_id"],
        tuple(rows),
        unlike_compose="" if force else unlike_compose,
    )
