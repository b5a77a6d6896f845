"""Every setting the harness reads, with its type and default, in one place.

`HarnessSettings` is the typed view of `harness.toml` + `HARNESS_*` + options (config.py keeps
the precedence). The dataclass fields are the schema: `unknown_keys` walks a TOML document
against them, and `unknown_variables` the environment, so that a mistyped key is an error that
names the nearest known one instead of a silently ignored knob.

Free tables (any key): `check.activation_reserve_by_service` (compose service names) and `slo`
(profiles, targets and routes: harness/load/slo_table.py validates those against its own keys).
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

TARGET_NAMES = ("twin", "twin-docker", "gpu", "attach")
PROFILES = ("steady", "saturate", "kv-pressure", "ramp", "soak", "conversation")
_FREE_TABLES = ("check.activation_reserve_by_service", "slo")
# HARNESS_* variables that are not settings: paths, secrets, switches read where they are used,
# and the load runner's variables for its locust child.
OTHER_VARIABLES = frozenset(
    {
        "HARNESS_CONFIG", "HARNESS_REPORTS_DIR", "HARNESS_STATE_DIR", "HARNESS_TWIN_CACHE",
        "HARNESS_TWIN_MODELS", "HARNESS_TWIN_RUNTIME", "HARNESS_ROUTER_API_KEY",
        "HARNESS_DEBIAN_MIRROR", "HARNESS_PLANT_SECRETS", "HARNESS_PROGRESS", "HARNESS_CHROMIUM",
    }
)  # fmt: skip
OTHER_PREFIXES = ("HARNESS_REQUIRE_", "HARNESS_SLO_")


@dataclass(frozen=True)
class CheckSettings:
    gpu_memory: str = "96GiB"
    utilization_limit: float = 0.85
    activation_reserve: str = "2GiB"
    cuda_context: str = "520MiB"
    block_size: int = 16
    activation_reserve_by_service: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TwinSettings:
    startup_timeout_s: float = 300.0
    classifier_timeout_s: float = 120.0


@dataclass(frozen=True)
class TargetSettings:
    routing_accuracy_floor: float = 0.90
    # How far one route's accuracy under load may fall below the same requests routed alone.
    routing_drop_under_load: float = 0.05
    long_context_route_check: bool = False
    require_full_kv: bool = False
    # The live KV capacity against the VRAM model's prediction on a GPU: the share below and
    # above it that still passes (tests/acceptance/test_engines.py explains the figures).
    kv_prediction_below: float = 0.10
    kv_prediction_above: float = 0.25
    vram_tolerance: float = 0.05
    min_headroom: str = "1GiB"
    router_url: str = ""
    classifier_url: str = ""
    primary_url: str = ""
    router_session_log: str = ""

    def url(self, role: str) -> str:
        """The configured URL of `role` (router, classifier, primary), without a trailing /."""
        return str(getattr(self, f"{role}_url")).rstrip("/")


@dataclass(frozen=True)
class LoadSettings:
    max_tokens: int = 64
    context_fraction: float = 0.65
    kv_pressure_max_tokens: int = 256
    twin_kv_pressure_capacity: str = "1.5x"
    twin_kv_pressure_max_tokens: int = 64
    twin_kv_pressure_max_model_len: int = 8192
    soak_warmup_s: float = 60.0
    # A run whose client sent its requests later than this at p95 is invalid (harness.toml
    # says why this value).
    max_dispatch_delay_p95_s: float = 0.05
    duration_s: Mapping[str, float] = field(
        default_factory=lambda: {
            "steady": 60.0,
            "saturate": 60.0,
            "kv-pressure": 90.0,
            "ramp": 60.0,
            "soak": 600.0,
            "conversation": 120.0,
        }
    )
    test_duration_s: Mapping[str, float] = field(
        default_factory=lambda: {
            "steady": 20.0,
            "saturate": 20.0,
            "kv-pressure": 45.0,
            "ramp": 24.0,
            "soak": 600.0,
            "conversation": 30.0,
        }
    )


@dataclass(frozen=True)
class CapacitySettings:
    """`harness capacity` (harness.toml's [capacity] says where each value comes from)."""

    profile: str = "steady"
    probe_s: float = 20.0
    start_rps: float = 1.0
    growth: float = 2.0
    max_probes: int = 8
    repeat_probes: int = 2
    resolution: float = 0.15
    goodput_share: float = 0.95
    max_request_s: float = 60.0
    min_requests: int = 25
    saturation_queue_rise: float = 3.0
    saturation_ttft_rise: float = 0.5
    kv_full: float = 0.9
    bound_share: float = 0.1
    settle_s: float = 30.0


@dataclass(frozen=True)
class EnvelopeSettings:
    """`harness envelope` (harness.toml's [envelope] says where each value comes from)."""

    output_tokens: int = 256
    prompt_steps: int = 4
    request_timeout_s: float = 600.0
    # The primary's objectives per cell on the twins; elsewhere those of steady's local route.
    twin_p95_ttft_s: float = 0.0
    twin_p95_e2e_s: float = 0.0


@dataclass(frozen=True)
class CompareSettings:
    ttft_p95_growth: float = 0.15
    ttft_p95_slack_s: float = 0.05
    itl_p95_growth: float = 0.25
    itl_p95_slack_s: float = 0.02
    min_samples: int = 5
    accuracy_drop: float = 0.02
    error_rate_increase: float = 0.0
    no_new_preemptions: tuple[str, ...] = ("steady",)
    max_fallbacks: int = 0
    max_long_context_failures: int = 0
    kv_tokens_drop: float = 0.05
    fallback_rate_increase: float = 0.02
    # The gate `make test` runs against the committed twin baseline (harness.load.gate).
    gate_p95_growth: float = 0.4
    gate_slack_s: float = 0.1


@dataclass(frozen=True)
class ReplaySettings:
    # `harness load replay` refuses a log with more requests unless --limit N takes the first N.
    max_requests: int = 2000


# The live stack's published ports (infra/docker-compose.yml), where `attach` looks by default.
ATTACH_DEFAULTS = TargetSettings(
    router_url="http://127.0.0.1:8080",
    classifier_url="http://127.0.0.1:8001",
    primary_url="http://127.0.0.1:8002",
)


@dataclass(frozen=True)
class HarnessSettings:
    check: CheckSettings = field(default_factory=CheckSettings)
    twin: TwinSettings = field(default_factory=TwinSettings)
    targets: Mapping[str, TargetSettings] = field(
        default_factory=lambda: {
            t: ATTACH_DEFAULTS if t == "attach" else TargetSettings() for t in TARGET_NAMES
        }
    )
    load: LoadSettings = field(default_factory=LoadSettings)
    capacity: CapacitySettings = field(default_factory=CapacitySettings)
    envelope: EnvelopeSettings = field(default_factory=EnvelopeSettings)
    compare: CompareSettings = field(default_factory=CompareSettings)
    replay: ReplaySettings = field(default_factory=ReplaySettings)
    slo: Mapping[str, Any] = field(default_factory=dict)

    def target(self, name: str) -> TargetSettings:
        return self.targets.get(name, TargetSettings())


SECTIONS: dict[str, type] = {
    "check": CheckSettings,
    "twin": TwinSettings,
    "load": LoadSettings,
    "capacity": CapacitySettings,
    "envelope": EnvelopeSettings,
    "compare": CompareSettings,
    "replay": ReplaySettings,
}


def field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


def known_keys() -> list[str]:
    """Every dotted key a harness.toml may set (free tables as their prefix)."""
    keys: list[str] = []
    for section, cls in SECTIONS.items():
        for name, hint in field_types(cls).items():
            dotted = f"{section}.{name}"
            if typing.get_origin(hint) is Mapping and dotted not in _FREE_TABLES:
                keys += [f"{dotted}.{profile}" for profile in PROFILES]
            else:
                keys.append(dotted)
    for target in TARGET_NAMES:
        keys += [f"targets.{target}.{name}" for name in field_types(TargetSettings)]
    return keys


def _walk(doc: Mapping[str, Any], prefix: str = "") -> Iterable[str]:
    for key, value in doc.items():
        dotted = f"{prefix}{key}"
        if dotted in _FREE_TABLES:
            continue
        if isinstance(value, Mapping):
            yield from _walk(value, dotted + ".")
        else:
            yield dotted


def nearest(name: str, choices: Iterable[str]) -> str:
    found = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f"; did you mean {found[0]!r}?" if found else ""


def unknown_keys(doc: Mapping[str, Any]) -> list[str]:
    """One message per key of `doc` (a parsed harness.toml) that no setting reads."""
    known = set(known_keys())
    out = []
    for dotted in _walk(doc):
        if dotted not in known:
            out.append(f"unknown key {dotted!r}{nearest(dotted, known)}")
    return out


def env_name(dotted: str) -> str:
    return "HARNESS_" + dotted.upper().replace(".", "_").replace("-", "_")


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One message per HARNESS_* variable that is neither a setting nor one the harness reads."""
    settings = {env_name(k) for k in known_keys()}
    prefixes = (*OTHER_PREFIXES, *(env_name(t) + "_" for t in _FREE_TABLES))
    out = []
    for name in sorted(environ):
        if not name.startswith("HARNESS_") or name in settings or name in OTHER_VARIABLES:
            continue
        if name.startswith(prefixes):
            continue
        out.append(f"unknown variable {name}{nearest(name, settings | OTHER_VARIABLES)}")
    return out
