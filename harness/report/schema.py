"""The published schema of `record.json`, and `load_record`, the one way the harness reads one.

`record.schema.json` (JSON Schema draft 2020-12) lies next to this module. `load_record` checks
the version and the header fields by hand first, so that an old or foreign file gets a plain
message even where `jsonschema` is not installed, then validates the whole document with
`jsonschema` when it can be imported.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from harness.errors import InputError
from harness.report.record import SCHEMA_VERSION

SCHEMA_PATH = Path(__file__).with_name("record.schema.json")
HEADER: dict[str, type | tuple[type, ...]] = {
    "run_id": str,
    "target": str,
    "status": str,
    "started_at": str,
}
SECTIONS = (
    "stack",
    "preflight",
    "startup",
    "acceptance",
    "load",
    "telemetry",
    "environment",
    "timings",
)


@cache
def record_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return schema


def field_path(parts: Iterable[object]) -> str:
    """`load.steady.latency.local.ttft_s.p95`, `acceptance.long_context[3].tokens`."""
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<document>"


def _check_by_hand(doc: Any, where: str) -> None:
    if not isinstance(doc, dict):
        raise InputError(f"{where}: not a run record: the document is a {type(doc).__name__}")
    if "schema_version" not in doc:
        raise InputError(
            f"{where}: field schema_version is missing: a record from before versioned records "
            f"(this harness reads version {SCHEMA_VERSION}); rerun to get a new one"
        )
    version = doc["schema_version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise InputError(f"{where}: field schema_version: expected an integer, got {version!r}")
    if version < SCHEMA_VERSION:
        raise InputError(
            f"{where}: field schema_version: {version} is older than this harness reads "
            f"({SCHEMA_VERSION}); rerun to get a new record"
        )
    if version > SCHEMA_VERSION:
        raise InputError(
            f"{where}: field schema_version: {version} was written by a newer harness "
            f"(this one reads {SCHEMA_VERSION}); upgrade the harness"
        )
    for key, kind in HEADER.items():
        if key not in doc:
            raise InputError(f"{where}: field {key} is missing")
        if not isinstance(doc[key], kind):
            raise InputError(f"{where}: field {key}: expected a string, got {doc[key]!r}")
    for key in SECTIONS:
        if key in doc and not isinstance(doc[key], dict):
            raise InputError(
                f"{where}: field {key}: expected an object, got {type(doc[key]).__name__}"
            )


def validate_record(doc: Any, where: str = "record") -> dict[str, Any]:
    """`doc` as a record, or InputError naming `where` and the first wrong field."""
    _check_by_hand(doc, where)
    try:
        import jsonschema
    except ImportError:  # the hand-written checks above are the floor
        return dict(doc)
    validator = jsonschema.Draft202012Validator(record_schema())
    errors = sorted(validator.iter_errors(doc), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        err = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        message = err.message if len(err.message) <= 200 else err.message[:200] + "..."
        raise InputError(f"{where}: field {field_path(err.absolute_path)}: {message}{more}")
    return dict(doc)


def load_record(path: Path) -> dict[str, Any]:
    """Read and validate a record.json; a run directory is accepted for convenience."""
    path = Path(path)
    if path.is_dir():
        path = path / "record.json"
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(f"{path}: no such run record") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path}:{exc.lineno}:{exc.colno}: not JSON ({exc.msg}): a corrupt or truncated record"
        ) from None
    return validate_record(doc, str(path))
