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

What each key judges, and what every run is judged by beyond the keys: harness.load.slo.
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
from harness.load.profiles import PROFILES

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
ENV_PREFIX = "HARNESS_SLO_"
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
