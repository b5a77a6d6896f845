"""Service-level objectives per profile and route, from harness.toml:

    [slo.steady]
    max_error_rate = 0.0
    max_preemptions = 0
    [slo.steady.local]
    p95_ttft_s = 20.0

Keys: max_error_rate, max_preemptions, min_kv_peak, min_waiting_capacity (on the primary),
max_rss_growth_mib and max_fd_growth (each watched process group, soak), and per route
p95_ttft_s, p95_itl_s, p95_e2e_s.
"""

from __future__ import annotations

from typing import Any

from harness.config import Settings

ROUTE_KEYS = {"p95_ttft_s": "ttft_s", "p95_itl_s": "itl_s", "p95_e2e_s": "e2e_s"}


def check_slos(settings: Settings, summary: dict[str, Any], primary: str) -> list[str]:
    """Every violated objective as a sentence; [] when the run meets them all."""
    profile = summary["profile"]
    section = settings.section(f"slo.{profile}")
    bad = []
    eng = summary["engines"].get(primary, {})
    if "max_error_rate" in section and summary["error_rate"] > float(section["max_error_rate"]):
        bad.append(
            f"{profile}: error rate {summary['error_rate']:.1%} > {section['max_error_rate']:.1%} "
            f"({summary['failed']} of {summary['requests']} failed: {summary['errors'][:3]})"
        )
    if "max_preemptions" in section and eng.get("preemptions", 0) > section["max_preemptions"]:
        bad.append(
            f"{profile}: {eng['preemptions']:.0f} preemptions on {primary} "
            f"(allowed {section['max_preemptions']})"
        )
    if "min_kv_peak" in section and eng.get("kv_usage_peak", 0) < section["min_kv_peak"]:
        bad.append(
            f"{profile}: KV usage peaked at {eng.get('kv_usage_peak', 0):.2f} on {primary}, "
            f"expected >= {section['min_kv_peak']}"
        )
    if "min_waiting_capacity" in section and eng.get("waiting_capacity_max", 0) < float(
        section["min_waiting_capacity"]
    ):
        bad.append(
            f"{profile}: no request waited for KV capacity on {primary} "
            f"(max waiting by reason=capacity {eng.get('waiting_capacity_max', 0):.0f})"
        )
    for group, res in summary.get("resources", {}).items():
        if (
            "max_rss_growth_mib" in section
            and res["rss_growth_mib"] > section["max_rss_growth_mib"]
        ):
            bad.append(
                f"{profile}: {group} memory grew {res['rss_growth_mib']} MiB "
                f"({res['rss_start_mib']} -> {res['rss_end_mib']} MiB from {res['from_s']} s to "
                f"{res['to_s']} s), allowed {section['max_rss_growth_mib']} MiB"
            )
        if "max_fd_growth" in section and res["fd_growth"] > section["max_fd_growth"]:
            bad.append(
                f"{profile}: {group} open files grew by {res['fd_growth']} "
                f"({res['fds_start']} -> {res['fds_end']}), allowed {section['max_fd_growth']}"
            )
    for route, limits in section.items():
        if not isinstance(limits, dict):
            continue
        lat = summary["latency"].get(route)
        if lat is None:
            bad.append(f"{profile}: no requests took route {route!r}")
            continue
        for key, metric in ROUTE_KEYS.items():
            if key in limits:
                p95 = lat[metric]["p95"]
                if p95 is None or p95 > float(limits[key]):
                    bad.append(f"{profile}/{route}: p95 {metric} {p95} > {limits[key]}")
    return bad
