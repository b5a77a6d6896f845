"""Planted secrets: known values a run is given, then searched for in everything it wrote.

`plant()` makes a copy of the stack whose ai-router reads two env files with planted values
(`.secrets`, the compose `env_file` the owner's real secrets live in, and a second `router.env`),
and planted values for the harness's own environment. `scan()` searches files and console text
for every value. `ConsoleTee` keeps a copy of everything the process (and any child that
inherits its stdout or stderr) writes to the console, so the console can be searched too.
The pytest plugin wires these together for a whole session (`--harness-plant-secrets`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

# Pieces of a secret searched for besides the whole: 12 characters (48 bits of a hex token, so
# no chance match in gigabytes), starting every 4.
FRAGMENT, STEP = 12, 4


def planted(kind: str) -> str:
    return f"planted-{kind}-{secrets.token_hex(12)}"


@dataclass(frozen=True)
class Planted:
    root: Path  # the copy's root, which holds the values in clear
    compose: Path
    secrets_file: dict[str, str]  # infra/.secrets
    router_env: dict[str, str]  # infra/router.env, the ai-router's second env file
    environ: dict[str, str]  # for the harness's own environment

    @property
    def values(self) -> dict[str, str]:
        """Each planted value by where it was planted, e.g. ".secrets ROUTER_API_KEYS #2": what a
        leak report names, never the value itself."""
        out: dict[str, str] = {}
        for where, doc in ((".secrets", self.secrets_file), ("router.env", self.router_env),
                           ("environment", self.environ)):  # fmt: skip
            for key, value in doc.items():
                parts = [v for v in value.split(",") if v]
                for n, part in enumerate(parts, 1):
                    out[f"{where} {key}" + (f" #{n}" if len(parts) > 1 else "")] = part
        return out


def plant(source_compose: Path, dest: Path) -> Planted:
    """A copy of the stack under `dest`: the compose file with planted env files for the
    ai-router, every other file of its folder linked, and the repository's tests/ beside it
    (the load profiles' locustfiles are found relative to the compose file)."""
    source_compose = source_compose.resolve()
    infra_src, repo = source_compose.parent, source_compose.parent.parent
    infra = dest / "infra"
    infra.mkdir(parents=True)
    for entry in infra_src.iterdir():
        if entry.name in (source_compose.name, ".secrets", "router.env"):
            continue
        (infra / entry.name).symlink_to(entry)
    if (repo / "tests").is_dir():
        (dest / "tests").symlink_to(repo / "tests")
    secrets_file = {
        "TUNNEL_TOKEN": planted("tunnel"),
        "CF_TUNNEL_TOKEN": planted("cftunnel"),
        "XAI_API_KEY": planted("xai"),
        "ROUTER_API_KEYS": f"{planted('router')},{planted('router')}",
    }
    router_env = {"ROUTER_EXTRA_TOKEN": planted("envfile")}
    environ = {"HF_TOKEN": planted("hf"), "OPENAI_API_KEY": planted("openai")}
    doc = yaml.safe_load(source_compose.read_text())
    router = next(
        name for name, svc in doc["services"].items()
        if (svc.get("labels") or {}).get("harness.role") == "router" or name == "ai-router"
    )  # fmt: skip
    doc["services"][router]["env_file"] = [".secrets", "router.env"]
    compose = infra / source_compose.name
    compose.write_text(yaml.safe_dump(doc, sort_keys=False))
    (infra / ".secrets").write_text("".join(f"{k}={v}\n" for k, v in secrets_file.items()))
    (infra / "router.env").write_text("".join(f"{k}={v}\n" for k, v in router_env.items()))
    return Planted(dest, compose, secrets_file, router_env, environ)


@dataclass(frozen=True)
class ScanResult:
    files: int
    bytes: int
    hits: tuple[str, ...]  # "<file or console>: [part of] <label>"


def fragments(value: str) -> tuple[str, ...]:
    """Pieces of a value's random part: a truncated repr or a cut log line that shows some of
    a secret still leaks it. Any run of FRAGMENT + STEP - 1 characters of it holds one piece."""
    secret = value.rsplit("-", 1)[-1] if value.startswith("planted-") else value
    if len(secret) <= FRAGMENT:
        return (secret,)
    starts = [*range(0, len(secret) - FRAGMENT, STEP), len(secret) - FRAGMENT]
    return tuple(dict.fromkeys(secret[i : i + FRAGMENT] for i in starts))


def _hits(where: str, wanted: list[tuple[str, bytes, list[bytes]]], found: set[bytes]) -> list[str]:
    out = []
    for label, whole, pieces in wanted:
        if whole in found:
            out.append(f"{where}: {label}")
        elif any(p in found for p in pieces):
            out.append(f"{where}: part of {label}")
    return out


def scan(
    roots: Iterable[Path],
    values: Mapping[str, str],
    console: bytes = b"",
    skip: Iterable[Path] = (),
) -> ScanResult:
    """Every file under `roots` (followed into subfolders, links not followed), and the console
    text, searched for each value (by label), and for pieces of it, as bytes."""
    wanted = [(k, v.encode(), [f.encode() for f in fragments(v)]) for k, v in values.items() if v]
    needles = [n for _, whole, pieces in wanted for n in (whole, *pieces)]
    skipped = {p.resolve() for p in skip}
    seen: set[Path] = set()
    files = size = 0
    hits: list[str] = []
    for root in roots:
        if not root.exists():
            continue
        paths = [root] if root.is_file() else sorted(root.rglob("*"))
        for path in paths:
            real = path.resolve()
            if path.is_symlink() or not path.is_file() or real in seen:
                continue
            if any(real == s or s in real.parents for s in skipped):
                continue
            seen.add(real)
            try:
                found, read = _search_file(path, needles)
            except OSError:
                continue
            files += 1
            size += read
            hits += _hits(str(path), wanted, found)
    hits += _hits("console output", wanted, {n for n in needles if n in console})
    return ScanResult(files, size, tuple(hits))


def _search_file(path: Path, values: list[bytes], chunk: int = 1 << 20) -> tuple[set[bytes], int]:
    """The values found in the file, and its size; read in chunks that overlap by the longest
    value, so that a large file (a model, an image layer) is never held whole."""
    overlap = max((len(v) for v in values), default=1) - 1
    found: set[bytes] = set()
    read = 0
    tail = b""
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            read += len(block)
            window = tail + block
            found.update(v for v in values if v in window)
            tail = window[-overlap:] if overlap else b""
    return found, read


class ConsoleTee:
    """Copies what is written to file descriptors 1 and 2 into `path`, and passes it on.

    Each descriptor is pointed at a pipe; a thread per pipe writes what arrives to the original
    descriptor and to the file. `text()` first pushes a marker through both pipes, so that it
    returns everything written before the call."""

    _MARKER = b"\0harness-console-tee-sync\0"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._saved: dict[int, int] = {}
        self._writers: dict[int, int] = {}
        self._synced: dict[int, threading.Event] = {}
        self._file = path.open("ab")
        self._stopped = False

    def start(self) -> None:
        for fd in (1, 2):
            self._saved[fd] = os.dup(fd)
            read, write = os.pipe()
            self._writers[fd] = write
            self._synced[fd] = threading.Event()
            threading.Thread(
                target=self._pump, args=(fd, read), name=f"console-tee-{fd}", daemon=True
            ).start()
            os.dup2(write, fd)

    def _pump(self, fd: int, read: int) -> None:
        keep = len(self._MARKER) - 1
        pending = b""
        while True:
            try:
                chunk = os.read(read, 65536)
            except OSError:
                return
            if not chunk:
                return
            data = pending + chunk
            if self._MARKER in data:
                data = data.replace(self._MARKER, b"")
                found = True
            else:
                found = False
            # A marker may arrive split across reads: hold back a tail that could begin one.
            cut = len(data)
            for n in range(min(keep, len(data)), 0, -1):
                if self._MARKER.startswith(data[-n:]):
                    cut = len(data) - n
                    break
            data, pending = data[:cut], data[cut:]
            if data:
                with self._lock:
                    if not self._stopped:
                        self._file.write(data)
                        self._file.flush()
                # A child that inherited the pipe may still write after stop(): pass it on.
                # A closed terminal must not stop the draining, or writers would block.
                with contextlib.suppress(OSError):
                    _write_all(self._saved[fd], data)
            if found:
                self._synced[fd].set()

    def text(self, timeout_s: float = 10.0) -> bytes:
        """Everything written so far (unless a pipe stays blocked longer than `timeout_s`)."""
        import sys

        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        for fd, event in self._synced.items():
            event.clear()
            _write_all(fd, self._MARKER)
            event.wait(timeout_s)
        with self._lock:
            return self.path.read_bytes()

    def stop(self) -> None:
        """Point 1 and 2 back at what they were; later output is no longer copied."""
        import sys

        if self._stopped:
            return
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        for fd, saved in self._saved.items():
            os.dup2(saved, fd)
            os.close(self._writers[fd])
        with self._lock:
            self._stopped = True
            self._file.close()


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


# What a stack run writes for its own sake: without them zero hits would prove nothing.
RUN_OUTPUTS = ("record.json", "report.md", "report.html")


@dataclass
class PlantedSession:
    """A whole test session run with planted secrets: the planted stack copy, the planted
    environment, the console copy, and what existed before, for `check()` at the end."""

    scratch: Path  # the planted copy and the console copy: removed by close()
    planted: Planted
    tee: ConsoleTee
    runs: Path  # <reports root>/runs: run directories the session adds there are searched
    runs_before: frozenset[Path]
    env_before: dict[str, str | None]

    @classmethod
    def start(cls, source_compose: Path, reports_root: Path) -> PlantedSession:
        import tempfile

        # Outside the reports and the pytest temp folder: the copy holds the values in clear.
        root = Path(tempfile.mkdtemp(prefix="harness-planted-"))
        planted = plant(source_compose, root / "stack")
        # Child sessions inherit the planted environment, but plant nothing of their own: this
        # session searches their run directories.
        names = [*planted.environ, "HARNESS_PLANT_SECRETS"]
        env_before = {k: os.environ.get(k) for k in names}
        os.environ.pop("HARNESS_PLANT_SECRETS", None)
        os.environ.update(planted.environ)
        tee = ConsoleTee(root / "console.log")
        tee.start()
        runs = reports_root.resolve() / "runs"
        before = frozenset(runs.iterdir()) if runs.is_dir() else frozenset()
        return cls(root, planted, tee, runs, before, env_before)

    def check(
        self,
        *,
        run_dir: Path | None,
        stack: object | None,
        junit: Path | None,
        basetemp: Path | None,
    ) -> tuple[str, list[str]]:
        """(a summary line, problems): every planted value, and the router key the harness
        generated, searched for in the session's run directory and every other run directory
        it added, the pytest temp folder (child sessions write their runs there), junit.xml and
        the console. Also a problem: a stack run that wrote none of its usual outputs, or a
        stack that was never given the planted env files."""
        problems: list[str] = []
        values = self.planted.values
        api_key = getattr(stack, "api_key", "")
        if api_key:
            values["the router key the harness generated"] = api_key
        if run_dir is not None:
            for name in RUN_OUTPUTS:
                if not (run_dir / name).is_file():
                    problems.append(f"the run wrote no {name} in {run_dir}: nothing to search")
        for svc in getattr(stack, "services", {}).values():
            if svc.log_path is not None and not Path(svc.log_path).is_file():
                problems.append(f"{svc.name} wrote no log at {svc.log_path}: nothing to search")
        given = getattr(stack, "secrets", None)
        if given is not None and getattr(stack, "target", "") != "attach":
            for value in self.planted.router_env.values():
                if value not in given:
                    problems.append(
                        "the stack was not given the planted router.env: its outputs prove "
                        "nothing about secrets"
                    )
        new_runs = sorted(set(self.runs.iterdir()) - self.runs_before) if self.runs.is_dir() else []
        roots = [
            *([run_dir] if run_dir else []),
            *[r for r in new_runs if r != run_dir],
            *([junit] if junit and junit.is_file() else []),
            *([basetemp] if basetemp else []),
        ]
        console = self.tee.text()
        result = scan(roots, values, console, skip=[self.scratch])
        problems += [f"planted secret written: {hit}" for hit in result.hits]
        where = ", ".join(str(r) for r in roots) or "no run directory"
        summary = (
            f"planted-secret check: {len(values)} values searched in {result.files} files "
            f"({result.bytes / 2**20:.1f} MiB under {where}) and {len(console) / 2**10:.0f} KiB "
            f"of console output: {len(result.hits)} hit(s)"
        )
        return summary, problems

    def close(self) -> None:
        self.tee.stop()
        for key, value in self.env_before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(self.scratch, ignore_errors=True)
