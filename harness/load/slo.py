"""Service-level objectives per profile, target and route, from harness.toml's `[slo.*]` tables:

    [slo.steady]                  # every target
    max_error_rate = 0.0
    [slo.steady.local]            # one route (a latency label: local, search, all, ...)
    p95_ttft_s = 30.0
    [slo.kv-pressure.gpu]         # one target: its keys replace the profile's
    min_waiting = 1
    [slo.steady.gpu.local]        # one route on one target
    p95_ttft_s = 5.0

A sub-table named after a target (twin, twin-docker, gpu, attach) is that target's override;
any other sub-table is a route. A per-target key beats the profile's key whatever set each.
Each key on its own follows the project's precedence: option > environment > file, the
environment name being HARNESS_ + the dotted key, e.g. HARNESS_SLO_KV_PRESSURE_GPU_MIN_WAITING.
An unknown key, profile or variable is a ConfigError that names the nearest known one.

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

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config import Settings, env_name
from harness.config_schema import TARGET_NAMES as TARGETS
from harness.errors import ConfigError
from harness.load.kvmodel import kv_model_problem
from harness.load.profiles import CHAT_PROFILES, PROFILES
from harness.load.routing import drift_problem, routing_problem
from harness.load.stats import client_behind

PROFILE_KEYS = (
    "max_error_rate",
    "max_fallback_rate",
    "max_preemptions",
    "min_kv_peak",
    "min_waiting_capacity",
    "min_waiting",
    "kv_peak_tolerance",
    "max_rss_growth_mib",
    "max_fd_growth",
    "min_trimmed_turns",
)
ROUTE_KEYS = {"p95_ttft_s": "ttft_s", "p95_itl_s": "itl_s", "p95_e2e_s": "e2e_s"}
# Keys judged from the primary's /metrics samples.
ENGINE_KEYS = (
    "max_preemptions",
    "min_kv_peak",
    "min_waiting_capacity",
    "min_waiting",
    "kv_peak_tolerance",
)
ENV_PREFIX = "HARNESS_SLO_"
TRIMMED_REASON = "classified:trimmed-history"
# Routes an environment variable may name without the file naming them first.
KNOWN_ROUTES = ("all", "local", "search")


@dataclass(frozen=True)
class SloTable:
    """The objectives one profile is held to on one target."""

    profile: str
    target: str | None
    keys: dict[str, float] = field(default_factory=dict)
    routes: dict[str, dict[str, float]] = field(default_factory=dict)
    # Each key's table, e.g. "slo.steady.twin": where a breach says the limit is set.
    origins: dict[str, str] = field(default_factory=dict)
    # Where each limit's value came from, by key or "<route>.<key>": the file and table, the
    # HARNESS_SLO_* variable, or the option, e.g. "[slo.steady.twin.local] p95_ttft_s in
    # harness.toml".
    sources: dict[str, str] = field(default_factory=dict)

    def where(self, key: str) -> str:
        origin = self.origins.get(key, f"slo.{self.profile}")
        return f"[{origin}] in harness.toml, or {env_name(f'{origin}.{key}')}"


def _nearest(word: str, known: Iterable[str]) -> str:
    found = difflib.get_close_matches(word, list(known), n=1, cutoff=0.0)
    return found[0] if found else "?"


def _unknown(
    where: str, key: str, known: Iterable[str], hint: str = "", near: Iterable[str] = ()
) -> ConfigError:
    """`near`: more keys the typo may have meant (keys of another level) for "did you mean"."""
    known = list(known)
    return ConfigError(
        f"{where}: unknown SLO key {key!r} (did you mean {_nearest(key, [*known, *near])!r}?"
        f"{' ' + hint if hint else ''} known: {', '.join(known)})"
    )


def _number(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"{where}: expected a number, got {value!r}") from None


def _route_table(where: str, table: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in table.items():
        if key not in ROUTE_KEYS:
            hint = ""
            if key in PROFILE_KEYS:
                name = where.rsplit(".", 1)[-1]
                hint = (
                    f"{key!r} is a profile key and {name!r} is read as a route; the targets are "
                    f"{', '.join(TARGETS)} (nearest: {_nearest(name, TARGETS)!r});"
                )
            raise _unknown(f"{where}.{key}", key, ROUTE_KEYS, hint)
        out[key] = _number(f"{where}.{key}", value)
    return out


def _level(where: str, table: Mapping[str, Any], *, targets: bool) -> dict[str, Any]:
    """One profile table (targets=True) or one target table inside it, checked and converted:
    profile keys as floats, routes (and targets) as nested dicts."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            if key in TARGETS:
                if not targets:
                    raise ConfigError(
                        f"{where}.{key}: a target table inside a target table; per-target "
                        f"objectives go in [slo.<profile>.<target>]"
                    )
                out[key] = _level(f"{where}.{key}", value, targets=False)
            else:
                out[key] = _route_table(f"{where}.{key}", value)
        elif key in PROFILE_KEYS:
            out[key] = _number(f"{where}.{key}", value)
        else:
            hint = ""
            meant = _nearest(key, (*PROFILE_KEYS, *ROUTE_KEYS))
            if meant in ROUTE_KEYS:
                hint = f"{meant!r} is a per-route key: put it under [{where}.<route>];"
            raise _unknown(f"{where}.{key}", key, PROFILE_KEYS, hint, near=ROUTE_KEYS)
    return out


def _file_tree(settings: Settings) -> dict[str, dict[str, Any]]:
    raw = settings.data.get("slo", {})
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{settings.path or 'harness.toml'}: slo must be a table of profiles")
    tree = {}
    for profile, table in raw.items():
        if profile not in PROFILES:
            raise ConfigError(
                f"slo.{profile}: unknown profile {profile!r} "
                f"(did you mean {_nearest(profile, PROFILES)!r}? known: {', '.join(PROFILES)})"
            )
        if not isinstance(table, Mapping):
            raise ConfigError(f"slo.{profile}: expected a table, got {table!r}")
        tree[profile] = _level(f"slo.{profile}", table, targets=True)
    return tree


def _env_part(name: str) -> str:
    return name.upper().replace("-", "_").replace(".", "_")


def _env_candidates(routes: Iterable[str]) -> list[str]:
    """Every variable name a known profile, target, route and key make, for "did you mean"."""
    names = []
    for profile in PROFILES:
        for target in (None, *TARGETS):
            base = f"slo.{profile}" + (f".{target}" if target else "")
            names += [env_name(f"{base}.{k}") for k in PROFILE_KEYS]
            names += [env_name(f"{base}.{r}.{k}") for r in routes for k in ROUTE_KEYS]
    return names


def _parse_env(name: str, routes: Iterable[str]) -> tuple[str, ...]:
    """HARNESS_SLO_<PROFILE>[_<TARGET>][_<ROUTE>]_<KEY> as a path below [slo]."""
    rest = name[len(ENV_PREFIX) :]
    path: list[str] = []
    for profile in sorted(PROFILES, key=len, reverse=True):
        if rest.startswith(_env_part(profile) + "_"):
            path.append(profile)
            rest = rest[len(profile) + 1 :]
            break
    for target in sorted(TARGETS, key=len, reverse=True):
        if path and rest.startswith(_env_part(target) + "_"):
            path.append(target)
            rest = rest[len(target) + 1 :]
            break
    key = rest.lower()
    if path and key in PROFILE_KEYS:
        return (*path, key)
    for route_key in ROUTE_KEYS:
        if path and key.endswith("_" + route_key) and len(key) > len(route_key) + 1:
            return (*path, key[: -len(route_key) - 1], route_key)
    near = _nearest(name, _env_candidates(routes))
    raise ConfigError(
        f"environment variable {name}: not an SLO key (did you mean {near}?); the form is "
        f"HARNESS_SLO_<PROFILE>[_<TARGET>][_<ROUTE>]_<KEY>"
    )


def _put(tree: dict[str, dict[str, Any]], path: tuple[str, ...], value: Any, where: str) -> None:
    """Set one objective from the environment or an option, checked like the file's."""
    profile, *inner = path
    if profile not in PROFILES:
        raise ConfigError(f"{where}: unknown profile {profile!r} (did you mean "
                          f"{_nearest(profile, PROFILES)!r}?)")  # fmt: skip
    node = tree.setdefault(profile, {})
    if inner and inner[0] in TARGETS and len(inner) > 1:
        node = node.setdefault(inner.pop(0), {})
    if len(inner) == 1:
        if inner[0] not in PROFILE_KEYS:
            raise _unknown(where, inner[0], PROFILE_KEYS)
        node[inner[0]] = _number(where, value)
    elif len(inner) == 2:
        route, key = inner
        if key not in ROUTE_KEYS:
            raise _unknown(where, key, ROUTE_KEYS)
        node.setdefault(route, {})[key] = _number(where, value)
    else:
        raise ConfigError(f"{where}: expected slo.<profile>[.<target>][.<route>].<key>")


def slo_tree(settings: Settings, routes: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """Every `[slo.*]` table, checked, with HARNESS_SLO_* variables and `slo.*` options applied
    key by key (option > environment > file). Raises ConfigError on anything unknown."""
    tree = _file_tree(settings)
    known_routes = sorted(
        {*KNOWN_ROUTES, *routes}
        | {
            r
            for t in tree.values()
            for r, v in t.items()
            if r not in TARGETS and isinstance(v, dict)
        }
    )
    for name in sorted(settings.environ):
        if name.startswith(ENV_PREFIX):
            path = _parse_env(name, known_routes)
            _put(tree, path, settings.environ[name], f"environment variable {name}")
    for dotted, value in settings.overrides.items():
        if dotted.startswith("slo.") and value is not None:
            _put(tree, tuple(dotted.split(".")[1:]), value, f"option for {dotted}")
    return tree


def check_slo_settings(settings: Settings) -> None:
    """Raise ConfigError on anything unknown in `[slo.*]` or HARNESS_SLO_*: the tables are read
    only when a profile runs, and a typo should stop a run before its stack comes up."""
    slo_tree(settings)


def limit_source(settings: Settings, table: str, key: str) -> str:
    """Where the value of `table`.`key` (e.g. "slo.steady.twin.local", "p95_ttft_s") came
    from, by the precedence slo_tree applies: option, environment variable, file."""
    dotted = f"{table}.{key}"
    if settings.overrides.get(dotted) is not None:
        return f"option {dotted}"
    if env_name(dotted) in settings.environ:
        return f"{env_name(dotted)} (environment)"
    return f"[{table}] {key} in {_shown(settings.path)}"


def _shown(path: Path | None) -> str:
    if path is None:
        return "harness.toml"
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def slo_table(
    settings: Settings, profile: str, target: str | None = None, routes: Iterable[str] = ()
) -> SloTable:
    """The objectives of `profile` on `target`: the profile's, then the target's on top."""
    table = slo_tree(settings, routes).get(profile, {})
    keys: dict[str, float] = {}
    origins: dict[str, str] = {}
    sources: dict[str, str] = {}
    route_limits: dict[str, dict[str, float]] = {}
    layers = [(f"slo.{profile}", table)]
    if target and target in table:
        layers.append((f"slo.{profile}.{target}", table[target]))
    for origin, layer in layers:
        for key, value in layer.items():
            if key in TARGETS:
                continue
            if isinstance(value, dict):
                route_limits.setdefault(key, {}).update(value)
                for route_key in value:
                    sources[f"{key}.{route_key}"] = limit_source(
                        settings, f"{origin}.{key}", route_key
                    )
            else:
                keys[key] = float(value)
                origins[key] = origin
                sources[key] = limit_source(settings, origin, key)
    return SloTable(profile, target, keys, route_limits, origins, sources)


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
