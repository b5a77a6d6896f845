"""Before the GPU target starts anything: the production stack, and the GPU's free memory.

The production stack holds the GPU, so a test run either refuses (and points at
`--harness-target attach`), or, when asked, stops the services it replaces (ai-router first, then
the engines, the primary before the router engine), runs, and restores them one service at a
time in the compose start order, each gated on its own healthcheck, exactly as `make up` would.
traefik and cloudflared keep running unless the run brings up its own edge: they hold no GPU
memory, and stopping them takes the public endpoint down for nothing. A run that starts its own
traefik (the emulated GPU always does) replaces production's too: its docker provider reads every
container on the engine, and would merge the run's ai-router, labelled as the compose file labels
it, into the owner's public route.

While anything is stopped, prod_marker's file says which run stopped what, so that a run that
dies before its teardown still leaves `harness status` and `make up` an answer.

Nothing but a failed start stops a restore: its progress lines are best-effort (after an SSH
hang-up the terminal returns EIO to every write), and an interrupt that arrives meanwhile (a
second Ctrl-C, SIGTERM, SIGHUP) is reported, and raised once every service has been started.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docker.errors import DockerException

from harness.compose import StackSpec
from harness.errors import StackError
from harness.progress import best_effort
from harness.stack.containers import prod_marker
from harness.stack.containers.plan import LABEL, gpu_service_order
from harness.stack.shield import deferring_interrupts
from harness.vram.free import free_memory_finding
from harness.vram.plan import VramPlan

COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"
# A crash-looping container counts: its restart policy would bring it back onto the GPU in the
# middle of the harness engines' memory profiling.
LIVE_STATES = ("running", "restarting")


@dataclass(frozen=True)
class ProdContainer:
    id: str
    name: str
    service: str  # the compose service it runs


def running_production(
    client: Any, spec: StackSpec, include_edge: bool = False, also: Collection[str] = ()
) -> list[ProdContainer]:
    """Running (or restarting) containers of the compose project that run a service this run
    replaces (`also`: more such services), matched by the compose labels only: a container that
    merely shares a service's name belongs to someone else. Never a harness container."""
    replaced = set(gpu_service_order(spec, include_edge)) | set(also)
    filters = {"label": [f"{COMPOSE_PROJECT}={spec.project}"], "status": list(LIVE_STATES)}
    found: dict[str, ProdContainer] = {}
    for c in client.containers.list(all=True, filters=filters):
        labels = c.labels or {}
        if labels.get(LABEL) == "1" or labels.get(COMPOSE_PROJECT) != spec.project:
            continue
        service = labels.get(COMPOSE_SERVICE, "")
        if service in replaced:
            found[c.id] = ProdContainer(c.id, c.name, service)
    return _in_start_order(spec, list(found.values()))


def _in_start_order(spec: StackSpec, items: list[ProdContainer]) -> list[ProdContainer]:
    order = {name: i for i, name in enumerate(spec.start_order)}
    return sorted(items, key=lambda p: (order.get(p.service, len(order)), p.name))


def refusal(spec: StackSpec, found: list[ProdContainer]) -> StackError:
    names = ", ".join(p.name for p in found)
    return StackError(
        f"the production stack {spec.project!r} is running ({names}) and holds the GPU. "
        "Test it as it runs with --harness-target attach, or pass --harness-replace-running to "
        "stop it for this run and restore it afterwards."
    )


def stop_production(
    client: Any, spec: StackSpec, found: list[ProdContainer], progress: Callable[[str], None],
    stopped: list[ProdContainer] | None = None, grace_s: int = 60, *, run_id: str = "",
    run_dir: Path | str = "", marker_path: Path | None = None,
) -> list[ProdContainer]:  # fmt: skip
    """Stop in reverse start order. Each container goes into `stopped`, the caller's list, as
    soon as it may be down, so that a later failure cannot make the caller forget it: restore
    that list whatever this raises. Returns `stopped`."""
    # Here, not at the top: docker-py is the optional '.[gpu]' extra, and a client exists only
    # where it is installed.
    from docker.errors import APIError, NotFound
    from requests import RequestException

    stopped = [] if stopped is None else stopped
    since = time.time()
    for p in reversed(found):
        # Recorded before the stop, so that a run killed during it still leaves the marker.
        _record(spec, [*stopped, p], run_id, run_dir, since, marker_path)
        progress(f"stopping production container {p.name}")
        try:
            client.containers.get(p.id).stop(timeout=grace_s)
        except NotFound:
            progress(f"production container {p.name} is already gone; nothing to restore")
            _record(spec, stopped, run_id, run_dir, since, marker_path)
            continue
        except (APIError, RequestException) as exc:
            # A timed-out or refused stop may still take effect; starting a container that
            # is running is a no-op, so restoring it too is always safe.
            stopped.append(p)
            raise StackError(f"could not stop production container {p.name}: {exc}") from None
        stopped.append(p)
    return stopped


def _record(
    spec: StackSpec, stopped: list[ProdContainer], run_id: str, run_dir: Path | str,
    since: float, path: Path | None,
) -> None:  # fmt: skip
    try:
        if not stopped:
            prod_marker.clear(path)
            return
        services = tuple(p.service for p in _in_start_order(spec, stopped))
        marker = prod_marker.ProdMarker(
            run_id, str(run_dir), since, services, os.getpid(), spec.project
        )
        prod_marker.write(marker, path)
    except OSError as exc:
        where = path or prod_marker.marker_path()
        raise StackError(f"cannot record that production is stopped in {where}: {exc}") from None


def restore_production(
    client: Any, spec: StackSpec, stopped: list[ProdContainer], progress: Callable[[str], None],
    poll_s: float = 2.0, marker_path: Path | None = None,
) -> None:  # fmt: skip
    """Start again in the compose start order, each gated on its docker healthcheck. A service
    that does not come back does not stop the rest; each one that does leaves `stopped` and the
    marker, which goes once all are back. Raises, naming each failure, when any did not.

    Neither `progress` (whatever it raises) nor an interrupt stops it: SIGINT, SIGTERM and SIGHUP
    are reported as they come and raised as KeyboardInterrupt at the end."""
    from docker.errors import APIError
    from requests import RequestException

    progress = best_effort(progress)
    failed: list[str] = []
    order = _in_start_order(spec, list(stopped))
    with deferring_interrupts("restoring production", "the restore", progress) as shield:
        for i, p in enumerate(order, 1):
            shield.status = f"{p.name}, {i} of {len(order)}"
            try:
                _restore_one(client, spec, p, progress, poll_s)
            except (StackError, APIError, RequestException) as exc:
                failed.append(f"{p.name}: {exc}")
                progress(f"could not restore production container {p.name}: {exc}")
                continue
            stopped.remove(p)
            _forget(spec, stopped, progress, marker_path)
        if failed:  # inside: this, not a deferred interrupt, is what the caller must hear
            raise StackError(
                f"production not fully restored ({'; '.join(failed)}); run `make up` to start "
                "the stack again in order"
            )


def _restore_one(
    client: Any, spec: StackSpec, p: ProdContainer, progress: Callable[[str], None],
    poll_s: float,
) -> None:  # fmt: skip
    svc = spec.services.get(p.service)
    budget = svc.healthcheck.startup_budget_s if svc and svc.healthcheck else 60.0
    progress(f"restoring production container {p.name} (up to {budget:.0f} s)")
    c = client.containers.get(p.id)
    c.start()
    deadline = time.monotonic() + budget
    while True:
        c.reload()
        state = c.attrs.get("State", {})
        health = (state.get("Health") or {}).get("Status")
        if state.get("Status") in ("exited", "dead"):
            raise StackError(f"production container {p.name} exited while being restored")
        if health == "healthy" or (health is None and state.get("Running")):
            break
        if time.monotonic() > deadline:
            raise StackError(
                f"production container {p.name} not healthy within {budget:.0f} s of its "
                f"restore (health: {health})"
            )
        time.sleep(poll_s)
    progress(f"{p.name}: {health or 'running'}")


def _forget(
    spec: StackSpec, stopped: list[ProdContainer], progress: Callable[[str], None],
    path: Path | None,
) -> None:  # fmt: skip
    """The marker now lists only what is still stopped; gone once nothing is."""
    try:
        if not stopped:
            prod_marker.clear(path)
            return
        marker = prod_marker.read(path)
        if marker is not None:
            services = tuple(p.service for p in _in_start_order(spec, stopped))
            prod_marker.write(dataclasses.replace(marker, services=services), path)
    except OSError as exc:
        # The restore itself matters more than its record; say so and go on.
        progress(f"could not update the production marker: {exc}")


def container_names(client: Any, ids: list[str]) -> dict[str, str]:
    out = {}
    for cid in ids:
        try:
            out[cid] = client.containers.get(cid).name
        except DockerException:  # gone meanwhile, or not a container of this engine
            out[cid] = cid[:12]
    return out


def vram_preflight(
    client: Any, plan: VramPlan, progress: Callable[[str], None], settle_s: float = 0.0,
    snapshot: Callable[[], Any] | None = None,
) -> None:  # fmt: skip
    """Raise unless NVML's free memory covers the engines' budgets plus their CUDA contexts.
    `settle_s`: how long to wait for memory that processes just stopped are still releasing."""
    if snapshot is None:
        from harness.telemetry.nvml import snapshot as nvml_snapshot

        snapshot = nvml_snapshot
    deadline = time.monotonic() + settle_s
    while True:
        snap = snapshot()
        finding = free_memory_finding(plan, snap)
        if finding is None:
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(2.0)
    ids = [p.container_id for p in snap.processes if p.container_id]
    names = container_names(client, ids)
    who = "; ".join(f"{n} ({cid[:12]})" for cid, n in names.items())
    extra = f"; containers: {who}" if who else ""
    raise StackError(f"{finding.message}{extra}. {finding.fix}")
