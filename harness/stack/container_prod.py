"""Before the GPU target starts anything: the production stack, and the GPU's free memory.

The production stack holds the GPU, so a test run either refuses (and points at
`--harness-target attach`), or, when asked, stops it (edge and router first, engines last, the
primary before the router engine), runs, and restores it one service at a time in the compose
start order, each gated on its own healthcheck, exactly as `make up` would.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.errors import StackError
from harness.gpu_free import free_memory_finding
from harness.spec import StackSpec
from harness.stack.container_spec import LABEL
from harness.vram import VramPlan

COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"


@dataclass(frozen=True)
class ProdContainer:
    id: str
    name: str
    service: str  # the compose service it runs, "" when unknown


def running_production(client: Any, spec: StackSpec) -> list[ProdContainer]:
    """Running containers of the compose project (by label) or with its fixed names; never
    a harness container."""
    fixed = {(s.container_name or s.name): s.name for s in spec.services.values()}
    found: dict[str, ProdContainer] = {}
    for c in client.containers.list(filters={"status": "running"}):
        labels = c.labels or {}
        if labels.get(LABEL) == "1":
            continue
        ours = labels.get(COMPOSE_PROJECT) == spec.project
        service = labels.get(COMPOSE_SERVICE, "") if ours else ""
        if service or c.name in fixed:
            found[c.id] = ProdContainer(c.id, c.name, service or fixed.get(c.name, ""))
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
    grace_s: int = 60,
) -> list[ProdContainer]:  # fmt: skip
    """Stop in reverse start order; returns what was stopped, in start order, for restore."""
    stopped: list[ProdContainer] = []
    for p in reversed(found):
        progress(f"stopping production container {p.name}")
        try:
            client.containers.get(p.id).stop(timeout=grace_s)
        except Exception as exc:
            raise StackError(f"could not stop production container {p.name}: {exc}") from None
        stopped.insert(0, p)
    return stopped


def restore_production(
    client: Any, spec: StackSpec, stopped: list[ProdContainer], progress: Callable[[str], None],
    poll_s: float = 2.0,
) -> None:  # fmt: skip
    """Start again in the compose start order, each gated on its docker healthcheck."""
    for p in _in_start_order(spec, stopped):
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
                    f"restore (health: {health}); the rest of the stack was not started"
                )
            time.sleep(poll_s)
        progress(f"{p.name}: {health or 'running'}")


def container_names(client: Any, ids: list[str]) -> dict[str, str]:
    out = {}
    for cid in ids:
        try:
            out[cid] = client.containers.get(cid).name
        except Exception:
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
