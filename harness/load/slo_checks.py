"""Every objective a load summary was judged by, as a row: limit, measured value, margin, and
where the limit was set. The reports' SLO table and their "Why it failed" block read these rows
from the record; `harness.load.slo.check_slos` says the same breaches as sentences.

A row's margin is the headroom in the key's own unit: limit - value for a `max_*` or `p95_*`
key, value - limit for a `min_*` key, so a negative margin is a breach. A row without a value
(no samples, no request on the route) is a breach too: missing data never passes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from harness.config import Settings, env_name
from harness.load.kvmodel import kv_model_problem
from harness.load.profiles import CHAT_PROFILES
from harness.load.routing import routing_problem
from harness.load.slo import ENGINE_KEYS, fallback_problem, fallback_share, trimmed_turns
from harness.load.slo_table import ROUTE_KEYS, SloTable, limit_source, slo_table

BUILT_IN = "built-in default"


@dataclass(frozen=True)
class SloCheck:
    profile: str
    key: str
    limit: float | None
    value: float | None
    bound: str  # "max" or "min": the side of the limit the value must stay on
    source: str  # where the limit was set
    route: str | None = None  # a route (latency keys) or a process group (soak keys)
    target: str | None = None
    note: str = ""  # why a value is missing, or what a breach means beyond the numbers
    passed_: bool | None = None  # set where the judgment is not value against limit

    @property
    def margin(self) -> float | None:
        if self.value is None or self.limit is None:
            return None
        return self.limit - self.value if self.bound == "max" else self.value - self.limit

    @property
    def passed(self) -> bool:
        if self.passed_ is not None:
            return self.passed_
        margin = self.margin
        return margin is not None and margin >= 0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["passed_"]
        out["margin"] = self.margin
        out["passed"] = self.passed
        return out


def _bound(key: str) -> str:
    return "min" if key.startswith("min_") else "max"


def _engine_value(key: str, eng: Mapping[str, Any]) -> float | None:
    field = {
        "max_preemptions": "preemptions",
        "min_kv_peak": "kv_usage_peak",
        "min_waiting_capacity": "waiting_capacity_max",
        "min_waiting": "waiting_max",
    }[key]
    value = eng.get(field)
    return None if value is None or isinstance(value, bool) else float(value)


def table_checks(
    table: SloTable,
    summary: Mapping[str, Any],
    primary: str,
    routing_floor: tuple[float, str] | None = None,
) -> list[SloCheck]:
    """The rows of one summary against `table`, in the order `evaluate` judges them.
    `routing_floor`: the target's routing accuracy floor and where it is set."""
    k = table.keys
    rows: list[SloCheck] = []

    def row(key: str, value: float | None, **kw: Any) -> None:
        kw.setdefault("limit", k.get(key))
        kw.setdefault("bound", _bound(key))
        kw.setdefault("source", table.sources.get(key) or table.where(key))
        rows.append(SloCheck(table.profile, key, value=value, target=table.target, **kw))

    if "max_error_rate" in k:
        row("max_error_rate", float(summary["error_rate"]))
    eng = summary.get("engines", {}).get(primary, {})
    samples = bool(eng.get("samples"))
    for key in ENGINE_KEYS:
        if key not in k or key == "kv_peak_tolerance":
            continue
        if not samples:
            row(key, None, note=f"no samples of {primary}'s /metrics")
        elif key == "min_waiting_capacity" and eng.get("waiting_by_reason") is False:
            row(key, None, note=f"{primary} exposes no vllm:num_requests_waiting_by_reason")
        else:
            row(key, _engine_value(key, eng))
    if "kv_peak_tolerance" in k:
        pool = summary.get("kv_pool") or {}
        why = kv_model_problem(pool, k["kv_peak_tolerance"]) if samples else None
        peak = pool.get("measured_peak")
        row(
            "kv_peak_tolerance",
            None if peak is None else float(peak),
            note=why
            or ("within the KV model's band" if samples else f"no samples of {primary}'s /metrics"),
            passed_=samples and why is None,
            bound="band",
        )
    resources = summary.get("resources") or {}
    for key, field in (("max_rss_growth_mib", "rss_growth_mib"), ("max_fd_growth", "fd_growth")):
        if key not in k:
            continue
        if not resources:
            row(key, None, note="no samples of process memory and open files")
        for group, res in resources.items():
            row(key, float(res[field]), route=group)
    if "min_trimmed_turns" in k:
        row("min_trimmed_turns", float(trimmed_turns(summary)))
    for route, limits in table.routes.items():
        lat = summary.get("latency", {}).get(route)
        for key, metric in ROUTE_KEYS.items():
            if key not in limits:
                continue
            p95 = None if lat is None else lat[metric]["p95"]
            rows.append(
                SloCheck(
                    table.profile,
                    key,
                    limit=limits[key],
                    value=p95,
                    bound="max",
                    source=table.sources.get(f"{route}.{key}") or table.where(key),
                    route=route,
                    target=table.target,
                    note="" if p95 is not None else f"no requests took route {route!r}",
                )
            )
    reasons: Mapping[str, int] = summary.get("route_reasons") or {}
    everything_fell_back = fallback_problem(summary)
    if everything_fell_back:
        row("classified", 0.0, limit=None, bound="min", source="every run",
            note=everything_fell_back, passed_=False)  # fmt: skip
    if "max_fallback_rate" in k:
        fell, answered = fallback_share(reasons)
        row("max_fallback_rate", fell / answered if answered else None,
            passed_=True if not answered else None)  # fmt: skip
    if routing_floor is not None and table.profile in CHAT_PROFILES:
        floor, where = routing_floor
        routing = summary.get("routing") or {}
        if not routing.get("labelled"):
            why = routing_problem(routing, floor, where) or ""
            row("routing_accuracy_floor", None, limit=floor, source=where, bound="min", note=why)
        else:
            row("routing_accuracy_floor", float(routing["accuracy"]), limit=floor,
                source=where, bound="min")  # fmt: skip
            for route, v in routing.get("per_route", {}).items():
                row("routing_accuracy_floor", float(v["accuracy"]), limit=floor, source=where,
                    bound="min", route=route)  # fmt: skip
    need = int((summary.get("settings") or {}).get("min_requests") or 0)
    if need:
        row("min_requests", float(summary["requests"]), limit=float(need), bound="min",
            source=f"the {table.profile} profile (harness/load/profiles.py)")  # fmt: skip
    return rows


def slo_checks(settings: Settings, summary: Mapping[str, Any], primary: str) -> list[SloCheck]:
    """Every objective of the summary's profile on its target, as `check_slos` judges them."""
    target = summary.get("target")
    table = slo_table(settings, summary["profile"], target, summary.get("latency", {}))
    floor = settings.typed.target(target or "").routing_accuracy_floor
    dotted = f"targets.{target or '<target>'}"
    where = _floor_source(settings, dotted)
    return table_checks(table, summary, primary, routing_floor=(floor, where))


def _floor_source(settings: Settings, table: str) -> str:
    key = "routing_accuracy_floor"
    if settings.overrides.get(f"{table}.{key}") is not None:
        return limit_source(settings, table, key)
    if env_name(f"{table}.{key}") in settings.environ:
        return limit_source(settings, table, key)
    if key in settings.section(table):
        return limit_source(settings, table, key)
    return BUILT_IN
