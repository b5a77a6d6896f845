"""The record that a harness run stopped the production stack: which run, since when, which
services. It exists from just before the first production container is stopped until the last
one is healthy again, so a run that dies in between (SIGKILL, OOM, a dropped SSH session) still
leaves an answer for `harness status`, `harness down` and `make up`.

Kept beside `harness up`'s state file (HARNESS_STATE_DIR), not under reports/, because it
describes this machine, not one run's results. It holds no secrets.

`harness status --production` (what `make up` calls) and
`python -m harness.stack.containers.prod_marker [show|clear]` print or remove it without
touching Docker or the stack state.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.stack.state import state_path

FILE_NAME = "production-stopped.json"


def marker_path() -> Path:
    return state_path().parent / FILE_NAME


@dataclass(frozen=True)
class ProdMarker:
    run_id: str
    run_dir: str
    since: float  # time.time() when the first service was stopped
    services: tuple[str, ...]  # compose services stopped, in start order
    pid: int
    project: str = ""

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(self.since))
        run = self.run_id or "?"
        where = f" (run dir {self.run_dir})" if self.run_dir else ""
        alive = "; that run is still in progress" if pid_alive(self.pid) else ""
        return (
            f"production stopped by run {run}{where} since {since}: services "
            f"{', '.join(self.services) or '-'}{alive}; `make up` restores it"
        )


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def write(marker: ProdMarker, path: Path | None = None) -> Path:
    """Replace the marker atomically: a reader never sees half a file."""
    path = path or marker_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    doc = asdict(marker)
    doc["services"] = list(marker.services)
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def read(path: Path | None = None) -> ProdMarker | None:
    """The marker, or None when there is none or it cannot be parsed."""
    path = path or marker_path()
    try:
        doc = json.loads(path.read_text())
        return ProdMarker(
            run_id=str(doc.get("run_id") or ""),
            run_dir=str(doc.get("run_dir") or ""),
            since=float(doc.get("since") or 0.0),
            services=tuple(str(s) for s in doc.get("services") or ()),
            pid=int(doc.get("pid") or 0),
            project=str(doc.get("project") or ""),
        )
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def clear(path: Path | None = None) -> None:
    (path or marker_path()).unlink(missing_ok=True)


def main(argv: Sequence[str] | None = None) -> int:
    """`show` (the default) prints the marker when there is one; `clear` removes it. Both exit
    0 either way, so that `make up` can call them unconditionally."""
    args = list(sys.argv[1:] if argv is None else argv)
    action = args[0] if args else "show"
    if action == "clear":
        clear()
        return 0
    if action != "show":
        print("usage: python -m harness.stack.containers.prod_marker [show|clear]", file=sys.stderr)
        return 2
    marker = read()
    if marker is not None:
        print(marker.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
