"""The `gpu` and `twin-docker` targets: the stack as testcontainers, in the compose start order.

One container per service, each gated on its health endpoint (reached through its port published
on 127.0.0.1) before the next one starts, with the compose healthcheck's startup budget as the
timeout; a container that exits meanwhile fails the bring-up at once, with its last log lines.
Everything a run creates (containers, the network, per-run volumes) carries the harness labels
and a `harness-<run id>-` name, so production containers are never touched unless asked
(`replace_running`) and `sweep()` removes whatever an interrupted run left behind.

The `gpu` target runs the compose file's images and commands on the NVIDIA GPU. `twin-docker`
(the emulated GPU) runs the very same plans and code path, with the named substitutions of
emulate.py applied to the plans and a recorded card in place of NVML; the run prints each one.
Where the run starts traefik (ingress.py), it comes last and is the stack's entry.
What a container looks like is decided in plan.py; this module only runs it.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from docker.errors import DockerException
from requests.exceptions import RequestException

from harness.compose import StackSpec
from harness.compose.env_file import missing_env_files
from harness.errors import StackError, StartupError
from harness.progress import best_effort
from harness.stack.base import ServiceHandle, Stack
from harness.stack.containers.base_image import ensure_base_image
from harness.stack.containers.client import (
    configure_ryuk,
    container_capability,
    docker_client,
    published_port,
    started_at,
    sweep,
)
from harness.stack.containers.emulate import Emulation, emulate
from harness.stack.containers.ingress import with_ingress
from harness.stack.containers.logs import LogFollower
from harness.stack.containers.plan import (
    HOST_IP,
    ContainerPlan,
    docker_kwargs,
    gpu_plans,
    mask_text,
    network_name,
    port_bindings,
    run_labels,
)
from harness.stack.containers.production import (
    ProdContainer,
    refusal,
    restore_production,
    running_production,
    stop_production,
    vram_preflight,
)
from harness.stack.health import health_waiter, wait_healthy
from harness.stack.kv_line import healthy_line
from harness.stack.shield import deferring_interrupts
from harness.telemetry.nvml import GpuSnapshot
from harness.twin.substitutions import Substitution, describe, summary
from harness.vram.plan import VramPlan

__all__ = [
    "ContainersBackend",
    "configure_ryuk",
    "container_capability",
    "docker_client",
    "new_run_id",
    "started_at",
    "sweep",
]


def new_run_id() -> str:
    return secrets.token_hex(4)


@dataclass
class ContainersBackend:
    """Brings the stack up as containers and tears it down, in order, on every way out."""

    spec: StackSpec
    run_dir: Path
    target: str = "gpu"  # gpu | twin-docker
    emulation: Emulation | None = None  # twin-docker: the substitutions' inputs
    vram_plan: VramPlan | None = None  # the free-memory preflight
    # The card the preflight reads: None is live NVML; the emulated GPU's is recorded.
    gpu_snapshot: Callable[[], GpuSnapshot] | None = None
    real_xai: bool = False  # the ai-router talks to the real xAI (paid), not the fake
    include_edge: bool = False  # gpu: also traefik and cloudflared (twin-docker: traefik only)
    replace_running: bool = False  # gpu: stop a running production stack, restore it after
    keep_stack: bool = False  # leave the stack (and production stopped) after the run
    use_ryuk: bool = True  # where its image is present; never with keep_stack
    startup_timeout_s: float | None = None  # a cap on each compose startup budget
    stop_grace_s: int = 10
    run_id: str = field(default_factory=new_run_id)
    progress: Callable[[str], None] = print
    stack: Stack | None = field(default=None, init=False)
    stopped_production: list[ProdContainer] = field(default_factory=list, init=False)
    substitutions: list[Substitution] = field(default_factory=list, init=False)
    _client: Any = field(default=None, init=False, repr=False)
    _network: Any = field(default=None, init=False, repr=False)
    _containers: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _followers: dict[str, LogFollower] = field(default_factory=dict, init=False, repr=False)
    _plans: dict[str, ContainerPlan] = field(default_factory=dict, init=False, repr=False)
    _volumes: list[str] = field(default_factory=list, init=False)
    # Image ID by tag of each compose `build:` image built by this run (once per run).
    _built: dict[str, str] = field(default_factory=dict, init=False)
    _ryuk: bool = field(default=False, init=False)

    # -- public -------------------------------------------------------------------------------

    def plans(self, api_key: str = "") -> list[ContainerPlan]:
        """The containers this backend would start, in order (no Docker needed).
        `self.substitutions` lists every change made to the compose file's services."""
        emu = self.emulation
        plans = gpu_plans(
            self.spec, self.run_id, api_key, include_edge=self.include_edge and emu is None,
            real_xai=self.real_xai, env_files_required=emu is None,
        )  # fmt: skip
        subs: list[Substitution] = []
        if emu is not None:
            plans, subs = emulate(self.spec, plans, emu, self.run_dir)
        # traefik where the run starts it, after the ai-router (ingress.py says where and why).
        plans, edge = with_ingress(self.spec, plans, self.run_id, self.run_dir, emu)
        subs += edge
        if emu is not None:
            missing = missing_env_files(self.spec, [p.service for p in plans])
            subs += [Substitution("env-files", svc, path, "absent") for svc, path in missing]
        if emu is not None and self.vram_plan is not None:
            card = f"{self.vram_plan.assumptions.total_bytes / 2**30:.1f} GiB"
            subs.append(Substitution("nvml", "preflight", "NVML", f"recorded idle card, {card}"))
        self.substitutions = subs
        return plans

    def up(self) -> Stack:
        stack = Stack(self.target, self.spec, self.run_dir, api_key=secrets.token_urlsafe(24))
        self.stack = stack
        try:
            self._client = docker_client()
            self._ryuk = configure_ryuk(self._client, self.use_ryuk and not self.keep_stack)
            ryuk = self._ryuk
            stack.notes.append(f"containers: run id {self.run_id}, ryuk {'on' if ryuk else 'off'}")
            if self.emulation is not None:
                ensure_base_image(progress=self.progress)
            plans = self.plans(stack.api_key)
            # Every line to the notes (the report's stack section), one line to the console.
            stack.notes.extend(describe(self.substitutions))
            line = summary(stack.notes)
            if line:
                self.progress(line)
            self._prepare_gpu(plans)
            self._create_network()
            for plan in plans:
                self._ensure_image(plan)
                self._create_volumes(plan)
                self._start(stack, plan)
        except BaseException:
            # Nothing to keep after a failed bring-up: production comes back even with keep_stack.
            # What ended the bring-up is what goes on, an interrupt during the restore included.
            self._teardown(quiet=True, restore=True, reraise=False)
            raise
        return stack

    def down(self) -> None:
        """Remove every container of the run in reverse start order, then its network and
        volumes; restore a production stack this run stopped. Safe to call twice."""
        problems = self._teardown(quiet=False, restore=not self.keep_stack)
        if problems:
            raise StackError("teardown was incomplete: " + "; ".join(problems))

    def restart(self, name: str) -> ServiceHandle:
        """Replace one container, gated on its health, on the same published ports."""
        if self.stack is None or name not in self._plans:
            raise StackError(f"{name} is not a running service of this run")
        plan = self._plans[name]
        old = self._containers.get(name)
        handle = self.stack.services.get(name)
        # The same host ports, so that URLs handed out before the restart still reach it; a
        # container that has exited no longer lists them, but its handle's URL still does.
        fixed = {}
        if handle is not None and handle.url and plan.health_port:
            fixed[plan.health_port] = int(handle.url.rsplit(":", 1)[1])
        if old is not None:
            wrapped = old.get_wrapped_container()
            wrapped.reload()
            for p in plan.ports:
                with contextlib.suppress(StackError):
                    fixed[p] = published_port(wrapped, p)
        self._stop_one(name)
        return self._start(self.stack, plan, fixed)

    def container(self, name: str) -> Any:
        """The docker-py container of a running service (for tests that inspect it)."""
        return self._containers[name].get_wrapped_container()

    # -- bring-up -----------------------------------------------------------------------------

    def _check_prefetched(self, images: bool = True) -> None:
        """Images and weights are fetched by `harness prefetch`, never inside a health budget:
        a 10 GB pull or a 34 GB download would be charged to the first engine's startup."""
        from harness.stack.containers.prefetch import missing_for_bringup

        reader = self.emulation.image if self.emulation is not None else None
        missing = missing_for_bringup(
            self._client, self.spec, include_edge=self.include_edge, images=images,
            reader_image=reader,
        )  # fmt: skip
        if missing:
            raise StackError("; ".join(missing))

    def _prepare_gpu(self, plans: list[ContainerPlan]) -> None:
        # A run's own traefik replaces production's, whose docker provider would read its labels.
        proxies = [p.service for p in plans if p.role == "proxy"]
        found = running_production(self._client, self.spec, self.include_edge, also=proxies)
        if found and not self.replace_running:
            raise refusal(self.spec, found)
        if self.target == "gpu":  # before production stops: a missing image stops nothing
            self._check_prefetched()
            # The ai-router as its files are now, not whatever compose last built for
            # production; a failed build stops nothing either.
            for plan in plans:
                self._build_image(plan)
        elif self.emulation is not None and self.emulation.weights_in_volume:
            # The emulated GPU from a GPU-box install: the weights check reads the real volume;
            # the images are the base image (a named substitution).
            self._check_prefetched(images=False)
        if found:
            stop_production(
                self._client, self.spec, found, self.progress, self.stopped_production,
                run_id=self.run_id, run_dir=self.run_dir,
            )  # fmt: skip
        if self.vram_plan is not None:
            vram_preflight(
                self._client, self.vram_plan, self.progress, snapshot=self.gpu_snapshot,
                settle_s=30.0 if self.stopped_production else 0.0,
            )  # fmt: skip

    def _create_network(self) -> None:
        from testcontainers.core.network import Network

        net = Network(docker_network_kw={"driver": "bridge", "labels": run_labels(self.run_id)})
        net.name = network_name(self.run_id, self.spec)
        self._network = net.create()

    def _create_volumes(self, plan: ContainerPlan) -> None:
        for name in plan.run_volumes:
            if name not in self._volumes:
                labels = run_labels(self.run_id)
                if self._ryuk:  # the reaper removes what carries its session label
                    from testcontainers.core.labels import LABEL_SESSION_ID, SESSION_ID

                    labels[LABEL_SESSION_ID] = SESSION_ID
                self._client.volumes.create(name, labels=labels)
                self._volumes.append(name)

    def _ensure_image(self, plan: ContainerPlan) -> None:
        """Have the plan's image here: a compose `build:` image built by this run is; another
        one that is absent is built, as `compose up` would; any other is pulled with per-layer
        progress (prefetch has normally done so already)."""
        from docker.errors import ImageNotFound

        from harness.stack.containers.prefetch import pull_image

        if plan.image in self._built:
            return
        try:
            self._client.images.get(plan.image)
            return
        except ImageNotFound:
            pass
        if plan.build_context:
            self._build_image(plan)
        else:
            pull_image(self._client, plan.image, self.progress)

    def _build_image(self, plan: ContainerPlan) -> None:
        """Build a compose `build:` image, once per run (the gpu target builds each one before
        production stops; Docker's layer cache makes an unchanged build take seconds)."""
        from docker.errors import APIError, BuildError

        if not plan.build_context or plan.image in self._built:
            return
        self.progress(f"building {plan.image} from {plan.build_context}")
        try:
            image, _ = self._client.images.build(path=plan.build_context, tag=plan.image, rm=True)
        except (BuildError, APIError) as exc:
            raise StackError(f"{plan.service}: building {plan.image} failed: {exc}") from None
        self._built[plan.image] = str(image.id)
        self.progress(f"built {plan.image}: {image.id}")

    def _timeout(self, plan: ContainerPlan) -> float:
        cap = self.startup_timeout_s
        return plan.startup_budget_s if cap is None else min(cap, plan.startup_budget_s)

    def _start(
        self, stack: Stack, plan: ContainerPlan, fixed_ports: dict[int, int] | None = None
    ) -> ServiceHandle:
        from testcontainers.core.container import DockerContainer

        log = self.run_dir / "logs" / f"{plan.service}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as fh:
            fh.write(f"[harness] {plan.render()}\n")
        c = DockerContainer(
            plan.image,
            command=cast(Any, list(plan.command)),
            env=dict(plan.environment),
            name=plan.name,
            network=self._network,
            network_aliases=list(plan.aliases),
        )
        for m in plan.mounts:
            c.with_volume_mapping(m.source, m.target, "ro" if m.read_only else "rw")
        # Loopback only, which with_bind_ports cannot say; ephemeral unless restarting.
        c.ports = cast("dict[str, int | None]", port_bindings(plan, fixed_ports))
        c.with_kwargs(**docker_kwargs(plan))  # one call: with_kwargs replaces
        timeout = self._timeout(plan)
        self.progress(f"starting {plan.service} as {plan.name} (health timeout {timeout:.0f} s)")
        self._plans[plan.service] = plan
        self._containers[plan.service] = c
        try:
            c.start()
        except (DockerException, RequestException) as exc:
            raise StackError(
                f"{plan.service}: docker could not start {plan.name}: "
                f"{mask_text(str(exc), plan.secret_values)}"
            ) from None
        wrapped = c.get_wrapped_container()
        follower = LogFollower(wrapped, log, plan.secret_values)
        follower.start()
        self._followers[plan.service] = follower
        wrapped.reload()
        port = plan.health_port or (plan.ports[0] if plan.ports else None)
        url = f"http://{HOST_IP}:{published_port(wrapped, port)}" if port else ""
        handle = ServiceHandle(
            plan.service,
            plan.role,
            url,
            health_path=plan.health_path,
            log_path=log,
            container_id=wrapped.id,
            image_id=wrapped.attrs.get("Image"),
            model_name=plan.model_name,
            started_at=started_at(wrapped),
            command=tuple(mask_text(a, plan.secret_values) for a in plan.command),
        )
        stack.services[plan.service] = handle
        handle.healthy_at = self._wait_ready(plan, handle, wrapped, follower, timeout)
        self.progress(healthy_line(handle, log))
        return handle

    def _wait_ready(
        self, plan: ContainerPlan, handle: ServiceHandle, wrapped: Any, follower: LogFollower,
        timeout: float,
    ) -> float:  # fmt: skip
        def exited() -> int | None:
            wrapped.reload()
            state = wrapped.attrs.get("State") or {}
            if state.get("Status") not in ("exited", "dead"):
                return None
            follower.finish()  # the last lines reach the file before the tail is read
            return int(state.get("ExitCode", -1))

        if plan.health_port is None:  # nothing to poll: running a moment later is ready
            time.sleep(2.0)
            code = exited()
            if code is not None:
                raise StartupError(plan.service, f"exited with code {code} during startup")
            return time.time()
        return wait_healthy(
            plan.service,
            handle.url + handle.health_path,
            timeout_s=timeout,
            exited=exited,
            log_path=handle.log_path,
            on_wait=health_waiter(plan.service, self.progress),
        )

    # -- teardown -----------------------------------------------------------------------------

    def _stop_one(self, name: str) -> None:
        c = self._containers.pop(name, None)
        follower = self._followers.pop(name, None)
        if c is not None:
            with contextlib.suppress(Exception):
                c.get_wrapped_container().stop(timeout=self.stop_grace_s)
            try:
                c.stop()  # remove, with its anonymous volumes
            except Exception as exc:
                if "No such container" not in str(exc) and "404" not in str(exc):
                    raise
        if follower is not None:
            follower.close()

    def _teardown(self, quiet: bool, restore: bool, reraise: bool = True) -> list[str]:
        # Best effort on purpose: every step is tried whatever the one before raised (Docker's
        # errors, or restore_production's own), and each problem is reported, so that one
        # failure never leaves the rest of the stack running. Its progress never raises (a dead
        # terminal after a hang-up), and while production is to be restored an interrupt waits
        # for the end (raised then when `reraise`).
        say = best_effort(self.progress)
        restoring = bool(self.stopped_production and restore)
        shielded = (
            deferring_interrupts("tearing down", "the production restore", say, reraise=reraise)
            if restoring
            else contextlib.nullcontext()
        )
        problems: list[str] = []
        with shielded:
            for name in reversed(list(self._containers)):
                try:
                    self._stop_one(name)
                except Exception as exc:
                    problems.append(f"container {name}: {type(exc).__name__}: {exc}")
            if self._network is not None:
                try:
                    self._network.remove()
                    self._network = None
                except Exception as exc:
                    problems.append(f"network: {exc}")
            for vol in list(self._volumes):
                try:
                    self._client.volumes.get(vol).remove(force=True)
                    self._volumes.remove(vol)
                except Exception as exc:
                    problems.append(f"volume {vol}: {exc}")
            if restoring:
                try:
                    restore_production(self._client, self.spec, self.stopped_production, say)
                    self.stopped_production = []
                except Exception as exc:
                    problems.append(f"restoring production: {exc}")
            for p in problems:
                say(f"teardown: {p} (harness down --sweep removes what is left)")
        return [] if quiet else problems
