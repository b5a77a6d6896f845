"""The owner's knobs: `harness.toml`, then `HARNESS_*` environment variables, then options.

One precedence rule for every setting: an option beats the environment, which beats the file,
which beats the built-in default. Settings are addressed as `section.key` (nested tables as
`section.sub.key`); the environment variable is HARNESS_ + the dotted name in upper case with
dots and dashes as underscores, e.g. `check.gpu_memory` -> HARNESS_CHECK_GPU_MEMORY.

Every key and its default live in config_schema.py; `Settings.typed` is the typed view, read
once. `load_settings` refuses a key or a HARNESS_* variable that no setting reads, naming the
nearest known one.
"""

from __future__ import annotations

import os
import tomllib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from harness.config_schema import (
    SECTIONS,
    CompareSettings,
    HarnessSettings,
    LoadSettings,
    TargetSettings,
    env_name,
    field_types,
    unknown_keys,
    unknown_variables,
)
from harness.errors import ConfigError

T = TypeVar("T")
CONFIG_NAME = "harness.toml"


def find_config(start: Path | None = None) -> Path | None:
    """HARNESS_CONFIG, else the nearest harness.toml from `start` (the cwd) upwards."""
    explicit = os.environ.get("HARNESS_CONFIG")
    if explicit:
        return Path(explicit)
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / CONFIG_NAME).is_file():
            return d / CONFIG_NAME
    return None


@dataclass(frozen=True)
class Settings:
    """Read-only view of the merged settings."""

    path: Path | None
    data: Mapping[str, Any] = field(default_factory=dict)
    overrides: Mapping[str, Any] = field(default_factory=dict)
    # repr=False: the environment holds secrets, and a traceback prints the Settings.
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)

    def get(self, dotted: str, kind: Callable[[Any], T], default: T) -> T:
        """The setting `dotted`, converted with `kind`; errors name where the value came from."""
        if dotted in self.overrides and self.overrides[dotted] is not None:
            return self._convert(self.overrides[dotted], kind, f"option for {dotted}")
        env = env_name(dotted)
        if env in self.environ:
            return self._convert(self.environ[env], kind, f"environment variable {env}")
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return self._convert(node, kind, f"{self.path or CONFIG_NAME}: {dotted}")

    @cached_property
    def typed(self) -> HarnessSettings:
        """Every setting, typed, with the schema's defaults; read once per Settings."""
        return typed_settings(self)

    def section(self, dotted: str) -> Mapping[str, Any]:
        node: Any = self.data
        for part in dotted.split("."):
            node = node.get(part, {}) if isinstance(node, Mapping) else {}
        return node if isinstance(node, Mapping) else {}

    @staticmethod
    def _convert(value: Any, kind: Callable[[Any], T], where: str) -> T:
        try:
            if kind is bool and isinstance(value, str):
                low = value.strip().lower()
                if low not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError(value)
                return low in ("1", "true", "yes")  # type: ignore[return-value]
            return kind(value)
        except (TypeError, ValueError) as exc:
            name = getattr(kind, "__name__", str(kind))
            raise ConfigError(f"{where}: expected {name}, got {value!r} ({exc})") from None


def load_settings(path: Path | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Merge harness.toml (if any), the environment and `overrides`."""
    path = path or find_config()
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    problems = [f"{path}: {p}" for p in unknown_keys(data)] + unknown_variables(os.environ)
    if problems:
        raise ConfigError("; ".join(problems))
    return Settings(path=path, data=data, overrides=dict(overrides or {}))


def _kind(hint: Any) -> Callable[[Any], Any]:
    if hint in (int, float, str, bool):
        return hint
    if hint == tuple[str, ...]:
        return lambda v: (
            tuple(x.strip() for x in v.split(",") if x.strip())
            if isinstance(v, str)
            else tuple(str(x) for x in v)
        )
    return lambda v: v


def _section(settings: Settings, prefix: str, cls: type, default: Any = None) -> Any:
    default = default if default is not None else cls()
    values: dict[str, Any] = {}
    for name, hint in field_types(cls).items():
        dotted = f"{prefix}.{name}"
        if typing.get_origin(hint) is Mapping:
            base = dict(getattr(default, name))
            table = settings.section(dotted)
            keys = dict.fromkeys([*base, *table])
            kind = float if typing.get_args(hint)[1] is float else str
            values[name] = {k: settings.get(f"{dotted}.{k}", kind, base.get(k)) for k in keys}
        else:
            values[name] = settings.get(dotted, _kind(hint), getattr(default, name))
    return cls(**values)


def typed_settings(settings: Settings) -> HarnessSettings:
    sections = {name: _section(settings, name, cls) for name, cls in SECTIONS.items()}
    defaults = HarnessSettings().targets
    targets = {
        t: _section(settings, f"targets.{t}", TargetSettings, defaults.get(t))
        for t in dict.fromkeys([*defaults, *settings.section("targets")])
    }
    assert isinstance(sections["load"], LoadSettings)
    assert isinstance(sections["compare"], CompareSettings)
    return HarnessSettings(**sections, targets=targets, slo=settings.section("slo"))
