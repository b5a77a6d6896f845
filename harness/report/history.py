"""`reports/history.jsonl` (one summary line per run), run lookup, and the baseline.

`reports/baseline.json` is a copy of the pinned run's record.json, so a comparison still works
after old run directories are pruned; its `run_id` says which run it is. `last-green` is the
newest history entry with status `passed` other than the run being compared and, given the run's
record, of the same kind (target, load profiles and their settings).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from harness.errors import InputError
from harness.locks import locked
from harness.report.run_dir import reports_root
from harness.report.schema import load_record

HISTORY = "history.jsonl"
BASELINE = "baseline.json"
LAST_GREEN = "last-green"


def root_of(run_dir: Path) -> Path:
    """The reports root a run directory belongs to (`<root>/runs/<id>`)."""
    run_dir = Path(run_dir)
    return run_dir.parent.parent if run_dir.parent.name == "runs" else reports_root()


def resolve_run(text: str | Path, root: Path | None = None) -> Path:
    """A run directory from a path (directory or its record.json) or a run id under runs/."""
    root = root or reports_root()
    given = Path(text)
    if given.name == "record.json" and given.is_file():
        return given.parent
    if (given / "record.json").is_file():
        return given
    by_id = root / "runs" / str(text)
    if (by_id / "record.json").is_file():
        return by_id
    raise InputError(
        f"{text}: no run there: neither a directory with a record.json nor a run id under "
        f"{root / 'runs'}"
    )


def read_history(path: Path) -> list[dict[str, Any]]:
    """Entries in file order; a line that is not a JSON object is an InputError naming it."""
    if not path.is_file():
        return []
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{n}: not JSON ({exc.msg})") from None
        if not isinstance(entry, dict) or not isinstance(entry.get("run_id"), str):
            raise InputError(f"{path}:{n}: field run_id is missing: not a history entry")
        out.append(entry)
    return out


def append_history(path: Path, entry: dict[str, Any]) -> bool:
    """Add `entry`; a run already there is replaced in place, never added twice.

    Returns True when the file changed. A lock file beside the history serialises writers (a
    nightly finishing while a run is finalized by hand), so neither loses the other's line.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with locked(path.with_name(path.name + ".lock")):
        return _append(path, entry)


def _append(path: Path, entry: dict[str, Any]) -> bool:
    entries = read_history(path)
    line = json.dumps(entry, sort_keys=True)
    for i, old in enumerate(entries):
        if old["run_id"] == entry["run_id"]:
            if json.dumps(old, sort_keys=True) == line:
                return False
            entries[i] = entry
            _write_atomic(path, "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries))
            return True
    with path.open("a") as f:
        f.write(line + "\n")
    return True


def recent(
    entries: list[dict[str, Any]], n: int, target: str | None = None
) -> list[dict[str, Any]]:
    """The last `n` entries by start time (of `target` only, when given), oldest first."""
    picked = [e for e in entries if target is None or e.get("target") == target]
    ordered = sorted(enumerate(picked), key=lambda ie: (str(ie[1].get("started_at")), ie[0]))
    return [e for _, e in ordered][-n:] if n > 0 else []


def last_green(
    root: Path,
    exclude: str,
    target: str | None = None,
    like: dict[str, Any] | None = None,
) -> Path:
    """The record of the newest passed run in the history other than `exclude`; with `target`,
    only runs against that target count (a twin run is no baseline for the GPU stack); with
    `like` (the current run's record), only runs of the same kind: same target, same compose
    file, same load profiles, each run with the same settings (a `make run` is no baseline for
    a 60 s `harness load steady`)."""
    from harness.report.comparable import kind_difference

    history = root / HISTORY
    target = target or (like or {}).get("target")
    entries = [
        e for e in recent(read_history(history), 10**9, target) if e.get("status") == "passed"
    ]
    unlike_runs: list[str] = []
    for entry in reversed(entries):
        if entry["run_id"] == exclude:
            continue
        candidates = [root / "runs" / entry["run_id"] / "record.json"]
        if entry.get("run_dir"):
            candidates.append(Path(entry["run_dir"]) / "record.json")
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            if like is not None:
                continue  # its kind cannot be told: an older green run may still fit
            raise InputError(
                f"{history}: last-green run {entry['run_id']} has no record.json any more "
                f"(looked at {candidates[0]}); pin a baseline with `harness baseline set RUN`"
            )
        if like is not None:
            diff = kind_difference(load_record(found), like)
            if diff:
                unlike_runs.append(f"{entry['run_id']} ({'; '.join(diff)})")
                continue
        return found
    of = f" against target {target}" if target else ""
    kind = " of the same kind" if like is not None else ""
    tail = f"; passed runs of another kind: {', '.join(unlike_runs[:3])}" if unlike_runs else ""
    raise InputError(
        f"{history}: no passed run{kind}{of} other than {exclude} to compare with{tail}"
    )


def resolve_baseline(
    choice: str | None,
    root: Path,
    current_id: str,
    target: str | None = None,
    *,
    current: dict[str, Any] | None = None,
) -> Path:
    """--baseline: a path, `last-green`, or (None) the pinned baseline, else last-green.
    With `current` (the run's record), last-green is the newest green run of its kind."""
    if choice == LAST_GREEN:
        return last_green(root, current_id, target, like=current)
    if choice is not None:
        path = Path(choice)
        if path.is_dir():
            path = path / "record.json"
        if not path.is_file():
            raise InputError(f"--baseline {choice}: no such file")
        return path
    pinned = root / BASELINE
    if pinned.is_file():
        return pinned
    try:
        return last_green(root, current_id, target, like=current)
    except InputError as exc:
        raise InputError(
            f"no baseline: {pinned} does not exist and {exc}; "
            "pin one with `harness baseline set RUN`"
        ) from None


def set_baseline(run_dir: Path, root: Path) -> Path:
    """Copy the run's validated record to `<root>/baseline.json`."""
    doc = load_record(run_dir / "record.json")
    path = root / BASELINE
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, json.dumps(doc, indent=2) + "\n")
    return path


def _write_atomic(path: Path, text: str) -> None:
    """Write a whole new file under a unique name, then rename it over `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
