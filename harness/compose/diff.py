"""What changed between two versions of the compose file, item by item, and which changes are
safe knobs and which need a human's review.

Safe knobs are the ones infra/README.md lists and `harness check` judges with numbers: an
engine's --gpu-memory-utilization, --max-model-len, --max-num-seqs and --kv-cache-dtype, the
ai-router's XAI_* settings and ROUTER_DEFAULT_ROUTE, and a longer healthcheck start_period.
Everything else is for a human: models, image versions, ports, the ai-network bridge, service
and container names, the Cloudflare tunnel, traefik labels, and whatever the harness knows
nothing about.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.compose.engine_args import split_flags
from harness.compose.parse import parse_duration
from harness.compose.services import MASK, is_secret_name
from harness.errors import InputError, SpecError

SAFE_FLAGS = frozenset(
    {"--gpu-memory-utilization", "--max-model-len", "--max-num-seqs", "--kv-cache-dtype"}
)
SAFE_ROUTER_ENV = "ROUTER_DEFAULT_ROUTE"
# Beside the compose file: the version that last started cleanly (infra/stackctl.sh writes it
# after a clean `up`; `make up` diffs against it first).
LAST_GOOD = ".last-good-compose.yml"
ABSENT = "(absent)"

Key = tuple[str, str]  # (service, or "" for the top level; the field)


@dataclass(frozen=True)
class Change:
    key: Key
    before: str | None  # None: absent
    after: str | None
    safe: bool
    why: str

    @property
    def item(self) -> str:
        service, name = self.key
        return f"{service} {name}" if service else name

    @property
    def kind(self) -> str:
        return "safe knob" if self.safe else "human review"

    def describe(self) -> str:
        return f"{self.item}: {_shown(self.before)} -> {_shown(self.after)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "item": self.item,
            "service": self.key[0] or None,
            "field": self.key[1],
            "before": self.before,
            "after": self.after,
            "kind": self.kind,
            "why": self.why,
        }


def _shown(value: str | None) -> str:
    return ABSENT if value is None else (value or '""')


@dataclass(frozen=True)
class ComposeDiff:
    before: str  # where the old version came from (a path or REF:path)
    after: str
    changes: tuple[Change, ...]

    def needs_review(self) -> list[Change]:
        return [c for c in self.changes if not c.safe]

    def unreviewed(self, reviewed: bool) -> list[Change]:
        return [] if reviewed else self.needs_review()

    def to_dict(self, reviewed: bool) -> dict[str, Any]:
        return {
            "before": self.before,
            "after": self.after,
            "changes": [c.to_dict() for c in self.changes],
            "reviewed": reviewed,
            "unreviewed": [c.item for c in self.unreviewed(reviewed)],
        }

    def render(self, reviewed: bool) -> str:
        lines = [f"Changes from {self.before} to {self.after}:"]
        if not self.changes:
            lines.append("  none")
        for c in self.changes:
            lines.append(f"  {c.kind:12}  {c.describe()}")
            if not c.safe:
                lines.append(f"  {'':12}  ({c.why})")
        review = self.needs_review()
        safe = len(self.changes) - len(review)
        tail = f"{len(self.changes)} change(s): {safe} safe knob(s), {len(review)} for human review"
        if review and reviewed:
            tail += " (accepted with --reviewed)"
        elif review:
            tail += "; NOT reviewed: " + ", ".join(c.item for c in review)
            tail += " (pass --reviewed once a human has looked at them)"
        lines.append(tail)
        return "\n".join(lines)


# -- flattening -------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def is_engine(body: Mapping[str, Any]) -> bool:
    """A vLLM engine, as the compose parser tells one: its image, or its harness.role."""
    labels = _pairs(body.get("labels"))
    return "vllm-openai" in str(body.get("image", "")) or labels.get("harness.role") in (
        "classifier",
        "primary",
    )


def _role(name: str, body: Mapping[str, Any]) -> str:
    role = _pairs(body.get("labels")).get("harness.role")
    if role:
        return role
    return {"ai-router": "router", "cloudflared": "tunnel", "traefik": "proxy"}.get(name, "")


def _pairs(value: Any) -> dict[str, str]:
    """A compose mapping written as a mapping or as a `NAME=value` list."""
    if isinstance(value, list):
        return dict([*str(v).split("=", 1), ""][:2] for v in value)
    if isinstance(value, dict):
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    return {}


def _command(name: str, value: Any, engine: bool) -> dict[Key, str]:
    """An engine's command flag by flag (vLLM's flags are known); any other command whole."""
    tokens = value.split() if isinstance(value, str) else [str(t) for t in value or ()]
    if not engine:
        return {(name, "command"): " ".join(tokens)}
    positionals, pairs = split_flags(tokens, name)
    out: dict[Key, str] = {}
    if positionals:
        out[(name, "model")] = positionals.pop(0)
    if positionals:
        out[(name, "command arguments")] = " ".join(positionals)
    for flag, values in pairs:
        key = (name, "model") if flag == "--model" else (name, flag)
        shown = " ".join(values) if values else "(set)"
        out[key] = f"{out[key]}, {shown}" if key in out else shown
    return out


def flatten(doc: Mapping[str, Any]) -> dict[Key, str]:
    """Every setting of a parsed compose document as (service, field) -> text."""
    out: dict[Key, str] = {}
    for key, value in doc.items():
        if key == "services" or str(key).startswith("x-"):
            continue  # x- blocks are YAML anchors; the services that use them carry them
        if key in ("networks", "volumes") and isinstance(value, dict):
            for name, body in value.items():
                out[("", f"{key}.{name}")] = _text(body)
        else:
            out[("", str(key))] = _text(value)
    for name, body in (doc.get("services") or {}).items():
        name = str(name)
        if not isinstance(body, dict):
            out[(name, "(service)")] = _text(body)
            continue
        out[(name, "(service)")] = "defined"
        engine = is_engine(body)
        for field, value in body.items():
            if field == "command" and isinstance(value, str | list):
                out.update(_command(name, value, engine))
            elif field in ("environment", "labels") and isinstance(value, list | dict):
                for var, val in _pairs(value).items():
                    secret = field == "environment" and is_secret_name(var)
                    literal = not val.startswith("$")
                    out[(name, f"{field}.{var}")] = MASK if secret and literal and val else val
            elif field == "healthcheck" and isinstance(value, dict):
                for hk, hv in value.items():
                    out[(name, f"healthcheck.{hk}")] = _text(hv)
            else:
                out[(name, str(field))] = _text(value)
    return out


# -- classification ---------------------------------------------------------------------------


def _longer(before: str | None, after: str | None) -> bool:
    if before is None or after is None:
        return False
    try:
        return parse_duration(after, where="", key="") >= parse_duration(before, where="", key="")
    except SpecError:
        return False


def classify(
    key: Key, before: str | None, after: str | None, roles: Mapping[str, tuple[str, bool]]
) -> tuple[bool, str]:
    """(safe, why) for one changed item; `roles`: service -> (role, is an engine)."""
    service, name = key
    role, engine = roles.get(service, ("", False))
    if not service:
        if name.startswith("networks."):
            return False, "the ai-network bridge: services reach each other by name on it"
        if name.startswith("volumes."):
            return False, "a named volume: the model cache and the router's logs live in them"
        if name == "name":
            return False, "the compose project name: volumes, network and labels derive from it"
        return False, "a top-level setting of the stack"
    if name == "(service)":
        return False, "a service name: depends_on, the router's URLs and stackctl.sh use it"
    if role == "tunnel":
        return False, "the Cloudflare tunnel: it decides what the internet reaches"
    if engine and name in SAFE_FLAGS:
        return True, "an engine knob `harness check` judges"
    if role == "router" and name.startswith("environment."):
        var = name.split(".", 1)[1]
        if (var.startswith("XAI_") and not is_secret_name(var)) or var == SAFE_ROUTER_ENV:
            return True, "an ai-router setting"
    if name == "healthcheck.start_period" and _longer(before, after):
        return True, "a longer start period"
    reasons = {
        "model": "a model: license, chat template, reasoning parser and KV size change; rerun "
        "routing accuracy",
        "image": "an image version: metric names and flags change between releases",
        "ports": "a port mapping: it decides what the network can reach",
        "networks": "the ai-network bridge: services reach each other by name on it",
        "container_name": "a container name: production detection and the docs use it",
        "--served-model-name": "the served model name: the router's ROUTER_*_MODEL must match",
    }
    if name in reasons:
        return False, reasons[name]
    if name.startswith("labels.traefik"):
        return False, "a traefik label: it decides what the proxy exposes"
    return False, "not one of the safe knobs in infra/README.md"


def _roles(*docs: Mapping[str, Any]) -> dict[str, tuple[str, bool]]:
    roles: dict[str, tuple[str, bool]] = {}
    for doc in docs:
        for name, body in (doc.get("services") or {}).items():
            if isinstance(body, dict):
                roles.setdefault(str(name), (_role(str(name), body), is_engine(body)))
    return roles


def _load(text: str, where: str) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"{where}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise InputError(f"{where}: not a compose mapping")
    return doc


def diff_texts(before: str, after: str, where: str = "compose file") -> list[Change]:
    """Every changed item between two compose texts, top level first, then by service."""
    old, new = _load(before, where), _load(after, where)
    a, b = flatten(old), flatten(new)
    roles = _roles(new, old)
    # A service added or removed is one item, not one per field.
    gone = {k[0] for k in a if k[1] == "(service)"} ^ {k[0] for k in b if k[1] == "(service)"}
    changes = []
    for key in sorted(set(a) | set(b)):
        if key[0] in gone and key[1] != "(service)":
            continue
        x, y = a.get(key), b.get(key)
        if x != y:
            safe, why = classify(key, x, y, roles)
            changes.append(Change(key, x, y, safe, why))
    return changes


def diff_compose(before: str, after: str, before_where: str, after_where: str) -> ComposeDiff:
    return ComposeDiff(before_where, after_where, tuple(diff_texts(before, after, after_where)))


# -- where the old version comes from ---------------------------------------------------------


def _git(args: Iterable[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InputError(f"git could not run in {cwd}: {exc}") from None


def read_ref(ref: str, compose: Path) -> tuple[str, str]:
    """(text, where) of the compose file as `ref` has it: a file, or a git ref (a commit,
    branch or tag) of the repository that holds `compose`."""
    path = Path(ref)
    if path.is_file():
        return path.read_bytes().decode("utf-8", errors="replace"), str(path)
    folder = compose.resolve().parent
    top = _git(["rev-parse", "--show-toplevel"], folder)
    if top.returncode != 0:
        raise InputError(f"--against {ref}: no such file, and {folder} is not in a git repository")
    root = Path(top.stdout.decode().strip())
    rel = compose.resolve().relative_to(root).as_posix()
    shown = _git(["show", f"{ref}:{rel}"], root)
    if shown.returncode != 0:
        why = shown.stderr.decode(errors="replace").strip().splitlines()
        raise InputError(
            f"--against {ref}: neither a file nor a git ref that holds {rel} "
            f"({why[-1] if why else 'git show failed'})"
        )
    return shown.stdout.decode("utf-8", errors="replace"), f"{ref}:{rel}"


def last_good_path(compose: Path) -> Path:
    return compose.parent / LAST_GOOD


def remember_good(compose: Path) -> Path:
    """Keep `compose` as the version that last started cleanly, byte for byte."""
    target = last_good_path(compose)
    tmp = target.with_name(target.name + ".tmp")
    shutil.copyfile(compose, tmp)
    tmp.replace(target)
    return target
