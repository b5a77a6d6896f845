"""A load run judged against its service-level objectives, the `[slo.*]` tables of
harness.toml (read and checked by harness.load.slo_table): each breach as a sentence.

Keys per profile (on the primary engine unless said otherwise):
- max_error_rate: failed / sent requests.
- max_fallback_rate: requests through the router whose X-Route-Reason is fallback:* / those
  whose answer carried a reason.
- max_preemptions: vllm:num_preemptions_total over the run.
- min_kv_peak: the highest vllm:kv_cache_usage_perc sampled.
- min_waiting_capacity: most requests waiting with reason="capacity" at once. vLLM counts every
  non-deferred waiting request there, so a wait for a --max-num-seqs slot counts as well as a
  wait for KV blocks.
- min_waiting: most requests waiting (vllm:num_requests_waiting) at once.
- kv_peak_tolerance: the KV usage peak must match the KV model (harness.load.kvmodel) within this
  relative tolerance, predicted from the requests routed local (only those reach the primary);
  when most were routed to search, the failure says so instead of a KV miss.
- max_rss_growth_mib, max_fd_growth: each watched process group (soak).
- min_trimmed_turns: requests through the router classified on trimmed history (X-Route-Reason
  classified:trimmed-history), for the conversation profile's headroom band.
Keys per route: p95_ttft_s, p95_itl_s, p95_e2e_s.

A key that needs engine samples breaches when there are none ("no samples"): missing
telemetry never passes. Beyond the keys, every run fails when its client fell behind its own
schedule (p95 dispatch delay above [load] max_dispatch_delay_p95_s: the run is invalid, its
latencies describe less load than the profile's; harness.load.stats.client_behind), when each
request through the router
fell back to the default route, or when it sent fewer requests than its profile needs; a chat
profile (steady, saturate, ramp, soak) fails when its routing accuracy under load, overall or
of any expected route, is below the target's routing_accuracy_floor (harness.load.routing).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.config import Settings, env_name
from harness.load.kvmodel import kv_model_problem
from harness.load.profiles import CHAT_PROFILES
from harness.load.routing import drift_problem, routing_problem
from harness.load.slo_table import ROUTE_KEYS, SloTable, slo_table
from harness.load.stats import client_behind

# Keys judged from the primary's /metrics samples.
ENGINE_KEYS = (
    "max_preemptions",
    "min_kv_peak",
    "min_waiting_capacity",
    "min_waiting",
    "kv_peak_tolerance",
)
TRIMMED_REASON = "classified:trimmed-history"


def check_slos(settings: Settings, summary: dict[str, Any], primary: str) -> list[str]:
    """Every violated objective as a sentence; [] when the run meets them all. The target comes
    from the summary (run_profile records it); without one only the profile's defaults apply."""
    target = summary.get("target")
    table = slo_table(settings, summary["profile"], target, summary.get("latency", {}))
    floor = settings.typed.target(target or "").routing_accuracy_floor
    name = f"targets.{target or '<target>'}.routing_accuracy_floor"
    where = f"[targets.{target or '<target>'}] routing_accuracy_floor in harness.toml, or "
    drop = settings.typed.target(target or "").routing_drop_under_load
    drop_name = f"targets.{target or '<target>'}.routing_drop_under_load"
    drop_where = (
        f"[targets.{target or '<target>'}] routing_drop_under_load in harness.toml, or "
        + env_name(drop_name)
    )
    return evaluate(
        table, summary, primary, routing_floor=(floor, where + env_name(name)),
        max_dispatch_delay_p95_s=settings.typed.load.max_dispatch_delay_p95_s,
        routing_drop=(drop, drop_where),
    )  # fmt: skip


def fallback_problem(summary: Mapping[str, Any]) -> str | None:
    """A sentence when every request through the router fell back to the default route: the
    classifier was never used, whatever the error rate says."""
    reasons: Mapping[str, int] = summary.get("route_reasons") or {}
    answered = sum(n for r, n in reasons.items() if r != "none")
    # classified:trimmed-history is a classification too, on the conversation's recent part.
    if answered == 0 or any(r.startswith("classified") and n for r, n in reasons.items()):
        return None
    seen = ", ".join(f"{r} {n}" for r, n in sorted(reasons.items()))
    return (
        f"every one of the {answered} requests through the router fell back to the default "
        f"route; none was classified (X-Route-Reason: {seen})"
    )


def fallback_share(reasons: Mapping[str, int]) -> tuple[int, int]:
    """(requests that fell back, requests whose answer carried an X-Route-Reason)."""
    answered = sum(n for r, n in reasons.items() if r != "none")
    return sum(n for r, n in reasons.items() if r.startswith("fallback")), answered


def fallback_rate_problem(table: SloTable, summary: Mapping[str, Any]) -> str | None:
    """A sentence when the share of requests that fell back exceeds max_fallback_rate."""
    if "max_fallback_rate" not in table.keys:
        return None
    limit = table.keys["max_fallback_rate"]
    reasons: Mapping[str, int] = summary.get("route_reasons") or {}
    fell, answered = fallback_share(reasons)
    if not answered or fell / answered <= limit:
        return None
    seen = ", ".join(f"{r} {n}" for r, n in sorted(reasons.items()) if r.startswith("fallback"))
    return (
        f"{fell} of {answered} requests through the router fell back to the default route "
        f"(fallback rate {fell / answered:.1%}: {seen}), above max_fallback_rate {limit:g} set "
        f"in {table.where('max_fallback_rate')}"
    )


def _scrape_note(summary: Mapping[str, Any]) -> str:
    errors = int(summary.get("scrape_errors") or 0)
    return f"; {errors} /metrics scrapes failed" if errors else ""


def _search_note(summary: Mapping[str, Any], primary: str) -> str:
    pool = summary.get("kv_pool") or {}
    search = int(pool.get("routed_search") or 0)
    routed = search + int(pool.get("routed_local") or 0)
    return (
        f"; {search} of {routed} requests were routed to search, not to {primary}" if search else ""
    )


def trimmed_turns(summary: Mapping[str, Any]) -> int:
    """Requests through the router classified on trimmed history."""
    return int((summary.get("route_reasons") or {}).get(TRIMMED_REASON, 0))


def trimmed_note(summary: Mapping[str, Any]) -> str:
    conv = summary.get("conversation") or {}
    keys = ("band_turns", "band_turns_trimmed", "history_tokens_max", "max_model_len")
    return ", ".join(f"{k} {conv.get(k)}" for k in keys)


def evaluate(
    table: SloTable,
    summary: dict[str, Any],
    primary: str,
    routing_floor: tuple[float, str] | None = None,
    max_dispatch_delay_p95_s: float | None = None,
    routing_drop: tuple[float, str] | None = None,
) -> list[str]:
    """The objectives of `table` against one load summary. `routing_floor`: the target's
    routing accuracy floor and where it is set, judged on a chat profile's routing under load.
    `max_dispatch_delay_p95_s`: [load]'s limit on the client's lateness, else the one the
    summary was made with; a summary without dispatch delays (an older record) is not judged
    on it."""
    profile = table.profile + (f" on {table.target}" if table.target else "")
    k = table.keys
    bad = []
    limit = max_dispatch_delay_p95_s
    if limit is None:
        limit = summary.get("max_dispatch_delay_p95_s")
    dispatch = summary.get("dispatch_delay_s") or {}
    behind = None if limit is None else client_behind(dispatch, float(limit))
    if behind:
        bad.append(f"{profile}: {behind}")
    eng = summary.get("engines", {}).get(primary, {})
    if "max_error_rate" in k and summary["error_rate"] > k["max_error_rate"]:
        bad.append(
            f"{profile}: error rate {summary['error_rate']:.1%} > {k['max_error_rate']:.1%} "
            f"({summary['failed']} of {summary['requests']} failed: {summary['errors'][:3]})"
        )
    engine_keys = [key for key in ENGINE_KEYS if key in k]
    if engine_keys and not eng.get("samples"):
        bad.append(
            f"{profile}: no samples of {primary}'s /metrics, so {', '.join(engine_keys)} "
            f"cannot be judged{_scrape_note(summary)}"
        )
        engine_keys = []
    if "max_preemptions" in engine_keys and eng["preemptions"] > k["max_preemptions"]:
        bad.append(
            f"{profile}: {eng['preemptions']:.0f} preemptions on {primary} "
            f"(allowed {k['max_preemptions']:g})"
        )
    if "min_kv_peak" in engine_keys and eng["kv_usage_peak"] < k["min_kv_peak"]:
        bad.append(
            f"{profile}: KV usage peaked at {eng['kv_usage_peak']:.2f} on {primary}, "
            f"expected >= {k['min_kv_peak']:g}"
        )
    if "min_waiting_capacity" in engine_keys:
        if eng.get("waiting_by_reason") is False:
            bad.append(
                f"{profile}: {primary} exposes no vllm:num_requests_waiting_by_reason, so "
                f"min_waiting_capacity cannot be judged (use min_waiting)"
            )
        elif eng["waiting_capacity_max"] < k["min_waiting_capacity"]:
            bad.append(
                f"{profile}: too few requests waited for scheduling capacity on {primary} "
                f"(most waiting at once with reason=capacity {eng['waiting_capacity_max']:.0f}, "
                f"expected >= {k['min_waiting_capacity']:g})"
            )
    if "min_waiting" in engine_keys and eng["waiting_max"] < k["min_waiting"]:
        bad.append(
            f"{profile}: too few requests waited on {primary} (most waiting at once "
            f"{eng['waiting_max']:.0f}, expected >= {k['min_waiting']:g}; running max "
            f"{eng.get('running_max', 0):.0f} of {eng.get('max_num_seqs', '?')} slots)"
            + _search_note(summary, primary)
        )
    if "kv_peak_tolerance" in engine_keys:
        why = kv_model_problem(summary.get("kv_pool") or {}, k["kv_peak_tolerance"])
        if why:
            bad.append(f"{profile}: {why}{_scrape_note(summary)}")
    resources = summary.get("resources")
    if not resources and ("max_rss_growth_mib" in k or "max_fd_growth" in k):
        bad.append(f"{profile}: no samples of process memory and open files")
    for group, res in (resources or {}).items():
        if "max_rss_growth_mib" in k and res["rss_growth_mib"] > k["max_rss_growth_mib"]:
            bad.append(
                f"{profile}: {group} memory grew {res['rss_growth_mib']} MiB "
                f"({res['rss_start_mib']} -> {res['rss_end_mib']} MiB from {res['from_s']} s to "
                f"{res['to_s']} s), allowed {k['max_rss_growth_mib']:g} MiB"
            )
        if "max_fd_growth" in k and res["fd_growth"] > k["max_fd_growth"]:
            bad.append(
                f"{profile}: {group} open files grew by {res['fd_growth']} "
                f"({res['fds_start']} -> {res['fds_end']}), allowed {k['max_fd_growth']:g}"
            )
    for route, limits in table.routes.items():
        lat = summary.get("latency", {}).get(route)
        if lat is None:
            bad.append(f"{profile}: no requests took route {route!r}")
            continue
        for key, metric in ROUTE_KEYS.items():
            if key in limits:
                p95 = lat[metric]["p95"]
                if p95 is None or p95 > limits[key]:
                    bad.append(f"{profile}/{route}: p95 {metric} {p95} > {limits[key]:g}")
    if "min_trimmed_turns" in k:
        trimmed = trimmed_turns(summary)
        if trimmed < k["min_trimmed_turns"]:
            bad.append(
                f"{profile}: {trimmed} turns were classified on trimmed history, expected >= "
                f"{k['min_trimmed_turns']:g}: no conversation reached the classifier's headroom "
                f"band (conversation figures: {trimmed_note(summary)})"
            )
    fell_back = fallback_problem(summary)
    if fell_back:
        bad.append(f"{profile}: {fell_back}")
    fell_back = fallback_rate_problem(table, summary)
    if fell_back:
        bad.append(f"{profile}: {fell_back}")
    if routing_floor is not None and table.profile in CHAT_PROFILES:
        misrouted = routing_problem(summary.get("routing"), *routing_floor)
        if misrouted:
            bad.append(f"{profile}: {misrouted}")
    if routing_drop is not None and table.profile in CHAT_PROFILES:
        drifted = drift_problem(summary.get("routing"), *routing_drop)
        if drifted:
            bad.append(f"{profile}: {drifted}")
    need = int((summary.get("settings") or {}).get("min_requests") or 0)
    if summary["requests"] < need:
        bad.append(
            f"{profile}: only {summary['requests']} requests were sent, the profile needs "
            f"{need} so that queueing shows inside its own window"
        )
    return bad
