"""Whether two runs are alike enough to compare: the target, the set of load profiles, each
shared profile's settings (duration, users, shape) and the compose file. `harness compare`
refuses runs that differ (NotComparableError, unless --force); the comparison marks the rows of
a profile that ran with other settings "not comparable"."""

from __future__ import annotations

from typing import Any

from harness.errors import InputError
from harness.report import summary
from harness.report.compose_hash import compose_difference

# A load profile's settings (the summary's "settings") that make two runs of it alike, with how
# a difference is named.
LIKE_WITH_LIKE = (
    ("duration_s", "duration", " s"),
    ("users", "users", ""),
    ("max_tokens", "max_tokens", ""),
    ("context_fraction", "context_fraction", ""),
    ("processes", "processes", ""),
    ("remote_workers", "remote workers", ""),
    ("search_allowed", "search routed", ""),
)


def _shown(value: Any, unit: str) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value:g}{unit}" if isinstance(value, int | float) and unit else str(value)


def unlike(
    base: dict[str, Any], cur: dict[str, Any], bs: dict[str, Any], cs: dict[str, Any]
) -> str:
    """How one profile's two runs differ in what they ran, e.g. "duration 20 s vs 60 s"
    (baseline first); "" when alike. A setting one record lacks (an older record) is not held
    against it."""
    parts = []
    bt, ct = bs.get("target") or base.get("target"), cs.get("target") or cur.get("target")
    if bt and ct and bt != ct:
        parts.append(f"target {bt} vs {ct}")
    bset, cset = bs.get("settings") or {}, cs.get("settings") or {}
    for key, name, unit in LIKE_WITH_LIKE:
        if key in bset and key in cset and bset[key] != cset[key]:
            parts.append(f"{name} {_shown(bset[key], unit)} vs {_shown(cset[key], unit)}")
    return ", ".join(parts)


def kind_difference(base: dict[str, Any], cur: dict[str, Any]) -> list[str]:
    """How two runs differ in kind, baseline first: target, the set of load profiles, and
    each shared profile's settings (duration, users, shape), e.g. ["steady: duration 20 s vs
    60 s"]. Empty for runs of the same kind: a `make run` and a `harness load steady` differ."""
    parts = []
    if base.get("target") != cur.get("target"):
        parts.append(f"target {base.get('target')} vs {cur.get('target')}")
    bp, cp = summary.profiles(base), summary.profiles(cur)
    if set(bp) != set(cp):
        parts.append(f"profiles {', '.join(bp) or 'none'} vs {', '.join(cp) or 'none'}")
    parts += unlike_profiles(base, cur)
    compose = compose_difference(base, cur)
    if compose:
        parts.append(compose)
    return parts


def unlike_profiles(base: dict[str, Any], cur: dict[str, Any]) -> list[str]:
    """Each load profile both runs ran with other settings or target, as "steady: duration
    20 s vs 60 s"."""
    bp, cp = summary.profiles(base), summary.profiles(cur)
    out = []
    for profile in sorted(set(bp) & set(cp)):
        why = unlike(base, cur, bp[profile], cp[profile])
        if why:
            out.append(f"{profile}: {why}")
    return out


class NotComparableError(InputError):
    """`harness compare` of two runs whose load profiles ran with other settings (exit 2,
    the message names each difference; --force compares them anyway)."""


def refuse_unlike(
    current: dict[str, Any], baseline: dict[str, Any], *, force: bool = False
) -> None:
    """Raise NotComparableError when a load profile of `current` ran with other settings or
    against another target than the baseline's, or the runs used other compose files, unless
    `force`. Profiles only one run has are not held against it (their rows are "not
    compared"), nor is a compose file an older record has no hash of."""
    if force:
        return
    diffs = unlike_profiles(baseline, current)
    if baseline.get("target") != current.get("target"):
        diffs.insert(0, f"target {baseline.get('target')} vs {current.get('target')}")
    compose = compose_difference(baseline, current)
    if compose:
        diffs.append(compose)
    if diffs:
        raise NotComparableError(
            f"{current['run_id']} is not comparable with baseline {baseline['run_id']} "
            f"(baseline first): {'; '.join(diffs)}. Compare with a run of the same kind "
            "(--baseline last-green picks the newest green one), or pass --force"
        )
