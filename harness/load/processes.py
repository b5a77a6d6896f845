"""The locust processes of a load run: one headless process, or locust's distributed mode (a
master and workers, on this machine or joining from others). Each runs in its own process group,
because gevent's monkey-patching must never reach the harness (or pytest) process."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from harness.compose.services import is_secret_name
from harness.errors import StackError
from harness.load.records import sort_records
from harness.load.settings import LoadSettings
from harness.stack.ports import free_port
from harness.stack.procs import stop_group


@dataclass(frozen=True)
class Distributed:
    """locust's distributed mode: a master (which runs the shape and writes the CSV, the JSON
    and, from its workers' messages, requests.jsonl) and workers (which run the users).

    processes: workers this run starts on this machine.
    remote: workers that join from elsewhere (`harness load PROFILE --worker HOST:PORT`).
    bind: where the master listens; loopback unless workers come from other machines.
    A profile's shape lets the workers finish their requests in flight before the run ends; a
    plain locustfile's --run-time ends it at once, and a request still in flight then has no
    record.
    """

    processes: int = 1
    remote: int = 0
    bind: tuple[str, int] | None = None
    wait_s: float = 120.0  # for every worker to connect, then the run ends instead of hanging

    @property
    def on(self) -> bool:
        return self.processes > 1 or self.remote > 0


def worker_argv(lf: Path, master: tuple[str, int], logfile: Path) -> list[str]:
    """A locust worker of the master at `master`, running the users of `lf`."""
    host, port = master
    return [
        sys.executable, "-m", "locust", "-f", str(lf), "--loglevel", "WARNING", "--worker",
        "--master-host", host, "--master-port", str(port), "--logfile", str(logfile),
    ]  # fmt: skip


def load_env(settings: LoadSettings) -> dict[str, str]:
    """The locust process's environment: this one's without secret-named variables, and the
    load settings (the router key among them, never on a command line)."""
    env = {k: v for k, v in os.environ.items() if not is_secret_name(k)}
    env.update(settings.to_env())
    return env


def spawn(argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    """One locust process in its own process group, stdout and stderr into `log`."""
    with log.open("wb") as fh:
        return subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )


def run_locust(
    lf: Path,
    host: str,
    settings: LoadSettings,
    out: Path,
    *,
    cwd: Path,
    timeout_s: float,
    users: int | None = None,
    run_time_s: float | None = None,
    distributed: Distributed | None = None,
) -> None:
    """locust headless in its own process group; its CSV, JSON and log go to `out`.

    Profiles bring their own LoadTestShape; plain locustfiles get `users` and `run_time_s`.
    `distributed` (when on) runs locust's distributed mode: see Distributed. The workers send
    each record to the master, which writes the run's requests.jsonl; it is sorted by start at
    the end.
    """
    dist = distributed or Distributed()
    env = load_env(settings)
    argv = [
        sys.executable, "-m", "locust", "-f", str(lf), "--loglevel", "WARNING", "--headless",
        "--host", host, "--csv", str(out / "locust"), "--json-file", str(out / "locust"),
        "--only-summary", "--logfile", str(out / "locust.log"), "--stop-timeout", "300",
        "--exit-code-on-error", "0",
    ]  # fmt: skip
    if users is not None:
        argv += ["-u", str(users), "-r", str(users)]
    if run_time_s is not None:
        argv += ["--run-time", f"{int(run_time_s)}s"]
    workers: list[tuple[list[str], dict[str, str], Path]] = []
    if dist.on:
        bind = dist.bind or ("127.0.0.1", free_port())
        argv += [
            "--master", "--master-bind-host", bind[0], "--master-bind-port", str(bind[1]),
            "--expect-workers", str(dist.processes + dist.remote),
            "--expect-workers-max-wait", str(int(dist.wait_s)),
        ]  # fmt: skip
        local = ("127.0.0.1", bind[1])
        for n in range(1, dist.processes + 1):
            logfile = out / f"locust-worker-{n}.log"
            workers.append(
                (
                    worker_argv(lf, local, logfile),
                    load_env(replace(settings, worker=str(n))),
                    logfile.with_suffix(".out"),
                )
            )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(spawn(argv, env, cwd, out / "locust.out"))
        procs += [spawn(w_argv, w_env, cwd, w_out) for w_argv, w_env, w_out in workers]
        rc = procs[0].wait(timeout=timeout_s)
        # The master tells its workers to quit.
        for p in procs[1:]:
            p.wait(timeout=60)
    except BaseException:
        for p in procs:
            if p.poll() is None:
                stop_group(p.pid)
        raise
    finally:
        if dist.on:
            sort_records(settings.records)
    if rc != 0:
        raise StackError(f"locust exited with {rc}; see {out / 'locust.out'}")
    failed = [(n, p.returncode) for n, p in enumerate(procs[1:], 1) if p.returncode != 0]
    if failed:
        raise StackError(
            "locust worker(s) "
            + ", ".join(f"{n} exited with {code}" for n, code in failed)
            + f"; see {out}/locust-worker-<n>.out"
        )


def run_worker(
    lf: Path, settings: LoadSettings, master: tuple[str, int], out: Path, *, cwd: Path, name: str
) -> int:
    """One locust worker on this machine for a master elsewhere: it runs the users the master
    gives it and sends each record there. Returns locust's exit code once the master lets it go."""
    out.mkdir(parents=True, exist_ok=True)
    logfile = out / f"locust-worker-{name}.log"
    proc = spawn(
        worker_argv(lf, master, logfile),
        load_env(replace(settings, worker=name)),
        cwd,
        logfile.with_suffix(".out"),
    )
    try:
        return proc.wait()
    except BaseException:
        stop_group(proc.pid)
        raise
