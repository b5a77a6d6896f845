"""Compose env files (`env_file: .secrets`): read only by what starts a service."""

from __future__ import annotations

from pathlib import Path

from harness.compose import ServiceSpec, StackSpec
from harness.errors import ConfigError


def read_env_file(path: Path) -> dict[str, str]:
    """A compose env file: KEY=VALUE lines, `#` comments, optional quotes and `export`."""
    out: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        out[key.strip()] = value
    return out


def service_env_files(spec: StackSpec, svc: ServiceSpec, *, required: bool) -> dict[str, str]:
    """The service's env files, merged in order, relative to the compose file. A missing one is
    a ConfigError when `required` (the real stack), and skipped otherwise (the twin runs
    without `.secrets`)."""
    base = spec.path.resolve().parent
    out: dict[str, str] = {}
    for name in svc.env_files:
        path = base / name
        if path.is_file():
            out.update(read_env_file(path))
        elif required:
            raise ConfigError(
                f"{spec.path}: service {svc.name!r}: env_file {path} does not exist "
                f"(copy {path.name}.example and fill it in)"
            )
    return out


def missing_env_files(spec: StackSpec, services: list[str]) -> list[tuple[str, str]]:
    """(service, path) for each env file of these services that does not exist."""
    base = spec.path.resolve().parent
    return [
        (name, str(base / f))
        for name in services
        if name in spec.services
        for f in spec.services[name].env_files
        if not (base / f).is_file()
    ]
