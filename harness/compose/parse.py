"""Parse `infra/docker-compose.yml` into a StackSpec.

Every error names the file and, where there is one, the line, the service and the flag.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import yaml

from harness.compose.engine_args import parse_engine_args
from harness.compose.order import start_order
from harness.compose.services import (
    MASK,
    DeviceReservation,
    HealthCheck,
    PortMapping,
    ServiceSpec,
    is_secret_name,
)
from harness.compose.stack import StackSpec
from harness.errors import SpecError

_DURATION = re.compile(r"([0-9.]+)(us|ms|s|m|h)")
_DURATION_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_INTERPOLATED = re.compile(r"^\$\{?[A-Za-z_][A-Za-z0-9_]*(:?-[^}]*)?\}?$")


def load_stack(path: str | Path) -> StackSpec:
    """Read and parse a compose file. Raises SpecError on anything it cannot understand."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the compose file: {exc.strerror}") from None
    return parse_stack(raw.decode("utf-8", errors="replace"), path)


def parse_stack(text: str, path: Path) -> StackSpec:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{where}: YAML syntax error: {problem}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
        raise SpecError(f"{path}: no `services:` mapping at the top level")
    if not doc["services"]:
        raise SpecError(f"{path}: `services:` is empty")

    services: dict[str, ServiceSpec] = {}
    inline: list[tuple[str, str]] = []
    for name, body in doc["services"].items():
        where = f"{path}: service {name!r}"
        if not isinstance(body, dict):
            raise SpecError(f"{where}: must be a mapping")
        try:
            service, secrets = _service(str(name), body, where)
        except (TypeError, AttributeError, ValueError, KeyError) as exc:
            # A shape no specific check anticipated: still an input error, never a traceback.
            raise SpecError(
                f"{where}: unexpected structure ({type(exc).__name__}: {exc})"
            ) from None
        services[service.name] = service
        inline.extend(secrets)

    order = start_order({n: tuple(s.depends_on) for n, s in services.items()}, str(path))
    networks = doc.get("networks") or {}
    if not isinstance(networks, dict):
        raise SpecError(f"{path}: `networks:` must be a mapping")
    return StackSpec(
        path=path,
        project=str(doc.get("name") or path.resolve().parent.name),
        services=services,
        start_order=order,
        networks=tuple(str(n) for n in networks),
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        inline_secrets=tuple(inline),
    )


def _service(name: str, body: dict[str, Any], where: str) -> tuple[ServiceSpec, list]:
    image = body.get("image")
    if not isinstance(image, str) or not image:
        raise SpecError(f"{where}: `image:` is missing")
    command = body.get("command") or ()
    if not isinstance(command, str | list | tuple):
        raise SpecError(f"{where}: `command:` must be a string or a list")
    env, inline = _environment(body.get("environment"), name, where)
    labels = _labels(body.get("labels"), where)
    is_engine = "vllm-openai" in image or labels.get("harness.role") in ("classifier", "primary")
    engine = None
    if is_engine:
        if not command:
            raise SpecError(f"{where}: a vLLM engine needs a `command:` that names the model")
        engine = parse_engine_args(command, where=where)
        inline.extend((name, flag) for flag, v in engine.extra if flag == "--api-key" and v)
    if isinstance(command, str):
        command = tuple(command.split())
    env_file = body.get("env_file") or ()
    if isinstance(env_file, str | dict):
        env_file = (env_file,)
    if not isinstance(env_file, list | tuple) or not all(
        isinstance(f, str) or (isinstance(f, dict) and isinstance(f.get("path"), str))
        for f in env_file
    ):
        raise SpecError(f"{where}: `env_file:` must be a path or a list of paths")
    devices = _devices(body, where)
    spec = ServiceSpec(
        name=name,
        image=image,
        container_name=body.get("container_name"),
        command=tuple(str(c) for c in command),
        ports=tuple(_port(p, where) for p in _as_list(body.get("ports"), "ports", where)),
        environment=env,
        env_files=tuple(str(f["path"] if isinstance(f, dict) else f) for f in env_file),
        volumes=tuple(_volume(v) for v in _as_list(body.get("volumes"), "volumes", where)),
        labels=labels,
        networks=_networks(body.get("networks"), where),
        depends_on=_depends_on(body.get("depends_on"), where),
        healthcheck=_healthcheck(body.get("healthcheck"), where),
        gpu=any(d.is_gpu for d in devices),
        devices=devices,
        ipc=body.get("ipc"),
        shm_size=None if body.get("shm_size") is None else str(body.get("shm_size")),
        engine=engine,
    )
    return spec, inline


def _as_list(value: Any, key: str, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SpecError(f"{where}: `{key}:` must be a list")
    return value


def _environment(value: Any, service: str, where: str) -> tuple[dict[str, str], list]:
    if value is None:
        return {}, []
    if isinstance(value, list):
        pairs = [[*str(v).split("=", 1), ""][:2] for v in value]
        items = {k: v for k, v in pairs}
    elif isinstance(value, dict):
        items = {str(k): "" if v is None else str(v) for k, v in value.items()}
    else:
        raise SpecError(f"{where}: `environment:` must be a list or a mapping")
    masked: dict[str, str] = {}
    inline: list[tuple[str, str]] = []
    for key, val in items.items():
        secret = is_secret_name(key)
        literal = bool(val) and not _INTERPOLATED.match(val)
        if secret and literal:
            inline.append((service, key))
        masked[key] = MASK if secret and literal else val
    return masked, inline


def _labels(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, list):
        return dict([*str(v).split("=", 1), ""][:2] for v in value)
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    raise SpecError(f"{where}: `labels:` must be a list or a mapping")


def _networks(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, list | dict):
        return tuple(str(n) for n in value)
    raise SpecError(f"{where}: `networks:` must be a list or a mapping")


def _depends_on(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, list):
        return {str(v): "service_started" for v in value}
    if isinstance(value, dict):
        out = {}
        for dep, cond in value.items():
            c = (cond or {}).get("condition", "service_started") if isinstance(cond, dict) else None
            if c is None:
                raise SpecError(f"{where}: depends_on.{dep} must be a mapping with `condition:`")
            out[str(dep)] = str(c)
        return out
    raise SpecError(f"{where}: `depends_on:` must be a list or a mapping")


def parse_duration(value: Any, *, where: str, key: str) -> float:
    """Seconds from a compose duration: '30s', '1m30s', '500ms', or a number of seconds."""
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise SpecError(f"{where}: healthcheck.{key} {value!r} is not a duration like 30s or 10m")
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


def _healthcheck(value: Any, where: str) -> HealthCheck | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SpecError(f"{where}: `healthcheck:` must be a mapping")
    test = value.get("test") or ()
    if isinstance(test, str):
        test = ("CMD-SHELL", test)
    kw: dict[str, Any] = {}
    for key, attr in (
        ("interval", "interval_s"),
        ("timeout", "timeout_s"),
        ("start_period", "start_period_s"),
    ):
        if key in value:
            kw[attr] = parse_duration(value[key], where=where, key=key)
    if "retries" in value:
        try:
            kw["retries"] = int(value["retries"])
        except (TypeError, ValueError):
            raise SpecError(
                f"{where}: healthcheck.retries {value['retries']!r} is not an integer"
            ) from None
    return HealthCheck(test=tuple(str(t) for t in test), **kw)


def _port(value: Any, where: str) -> PortMapping:
    try:
        if isinstance(value, dict):
            published = value.get("published")
            return PortMapping(
                container_port=int(value["target"]),
                host_port=None if published is None else int(published),
                host_ip=str(value.get("host_ip", "")),
                protocol=str(value.get("protocol", "tcp")),
            )
        text = str(value)
        proto = "tcp"
        if "/" in text:
            text, proto = text.split("/", 1)
        if text.startswith("["):  # [::1]:8001:8000
            host_ip, _, rest = text[1:].partition("]:")
            host, container = rest.split(":")
            return PortMapping(int(container), int(host), host_ip, proto)
        parts = text.split(":")
        if len(parts) == 1:
            return PortMapping(int(parts[0]), None, "", proto)
        if len(parts) == 2:
            return PortMapping(int(parts[1]), int(parts[0]), "", proto)
        if len(parts) == 3:
            host_port = int(parts[1]) if parts[1] else None
            return PortMapping(int(parts[2]), host_port, parts[0], proto)
    except (KeyError, ValueError):
        pass
    raise SpecError(
        f"{where}: cannot read port mapping {value!r} (expected HOST_IP:HOST:CONTAINER)"
    )


def _volume(value: Any) -> str:
    if isinstance(value, dict):
        return f"{value.get('source', '')}:{value.get('target', '')}"
    return str(value)


def _devices(body: dict[str, Any], where: str) -> tuple[DeviceReservation, ...]:
    """`deploy.resources.reservations.devices`, read as compose reads it: `count` is a number
    or `all`, and without it (and without `device_ids`) every matching device is reserved."""
    try:
        devices = body.get("deploy", {}).get("resources", {}).get("reservations", {})
        devices = devices.get("devices", []) or []
    except AttributeError:
        raise SpecError(f"{where}: `deploy.resources.reservations` must be mappings") from None
    if not isinstance(devices, list):
        raise SpecError(f"{where}: `deploy.resources.reservations.devices` must be a list")
    at = f"{where}: deploy.resources.reservations.devices"
    return tuple(_device(d, f"{at}[{i}]") for i, d in enumerate(devices))


def _device(entry: Any, where: str) -> DeviceReservation:
    if not isinstance(entry, dict):
        raise SpecError(f"{where}: must be a mapping")
    caps = entry.get("capabilities") or []
    ids = entry.get("device_ids") or []
    options = entry.get("options") or {}
    if not isinstance(caps, list) or not isinstance(ids, list) or not isinstance(options, dict):
        raise SpecError(f"{where}: capabilities and device_ids are lists, options a mapping")
    count = entry.get("count")
    if count is not None and ids:
        raise SpecError(f"{where}: `count` and `device_ids` exclude each other")
    if ids:
        n = 0
    elif count is None or str(count).lower() == "all":
        n = -1
    elif not isinstance(count, bool) and str(count).isdigit() and int(count) > 0:
        n = int(count)
    else:
        raise SpecError(f"{where}: `count` must be a positive number or `all`, got {count!r}")
    return DeviceReservation(
        capabilities=tuple(str(c) for c in caps),
        driver=str(entry.get("driver") or ""),
        count=n,
        device_ids=tuple(str(i) for i in ids),
        options=tuple((str(k), str(v)) for k, v in options.items()),
    )
