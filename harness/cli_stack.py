"""`harness up | down | status | twin build`: the stack commands of the CLI."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType

from harness.errors import StackError

DEFAULT_COMPOSE = Path("infra/docker-compose.yml")


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def cmd_up(ns: argparse.Namespace) -> int:
    from harness.config import load_settings
    from harness.report.run_dir import new_run_dir
    from harness.spec import load_stack
    from harness.stack import state
    from harness.stack.factory import make_backend, parse_kv_overrides

    previous = state.load()
    if previous is not None:
        raise StackError(
            f"a {previous['target']} stack is already up (run dir {previous['run_dir']}); "
            "run `harness down` first"
        )
    settings = load_settings(ns.config)
    kv = parse_kv_overrides(ns.kv_tokens, load_stack(ns.compose))
    run_dir = new_run_dir(ns.target)
    # SIGTERM during bring-up tears down like Ctrl-C does.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    backend = make_backend(ns.target, ns.compose, settings, run_dir, kv_overrides=kv)
    stack = backend.up()
    path = state.save(stack)
    print(f"\n{ns.target} stack is up; logs in {run_dir / 'logs'}")
    for note in stack.notes:
        print(f"  note: {note}")
    for s in stack.services.values():
        ttl = f"{s.time_to_healthy_s:.1f} s" if s.time_to_healthy_s is not None else "-"
        kv_text = f"  KV {s.kv.tokens:,} tokens ({s.kv.max_concurrency:.2f}x)" if s.kv else ""
        print(f"  {s.name:14} {s.url:24} healthy in {ttl}{kv_text}")
    print(f"state: {path} (harness status, harness down)")
    return 0


def cmd_down(ns: argparse.Namespace) -> int:
    from harness.stack import state
    from harness.stack.procs import group_alive, stop_group

    doc = state.load()
    if doc is None:
        print("no stack recorded as up; nothing to stop")
        return 0
    for svc in reversed(doc["services"]):
        pid = svc.get("pid")
        if pid and group_alive(pid):
            print(f"stopping {svc['name']} (process group {pid})")
            stop_group(pid)
    left = [s["name"] for s in doc["services"] if s.get("pid") and group_alive(s["pid"])]
    state.clear()
    if left:
        print(f"still running after SIGKILL: {', '.join(left)}", file=sys.stderr)
        return 3
    print("stack is down; no process left")
    return 0


def cmd_status(ns: argparse.Namespace) -> int:
    import httpx

    from harness.stack import state

    doc = state.load()
    if doc is None:
        print("no stack recorded as up")
        return 1
    bad = 0
    print(f"{doc['target']} stack, run dir {doc['run_dir']}")
    for svc in doc["services"]:
        try:
            code: int | str = httpx.get(svc["url"] + "/health", timeout=5).status_code
        except httpx.HTTPError as exc:
            code = type(exc).__name__
        bad += code != 200
        print(f"  {svc['name']:14} {svc['url']:24} health: {code}")
    return 0 if bad == 0 else 1


def cmd_twin_build(ns: argparse.Namespace) -> int:
    from harness.twin.build import build_twin

    models = build_twin(ns.cache_dir, force=ns.force)
    verb = "built" if models.built else "up to date (inputs unchanged)"
    print(f"twin models {verb}: {models.classifier_dir.parent} (inputs {models.input_hash[:12]})")
    for key, value in sorted(models.metrics.items()):
        print(f"  {key}: {value:g}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    up = sub.add_parser("up", help="bring the stack up, one service at a time, health-gated")
    up.add_argument("--target", default="twin", choices=("twin", "attach", "gpu", "twin-docker"))
    up.add_argument("--compose", type=Path, default=DEFAULT_COMPOSE)
    up.add_argument(
        "--kv-tokens",
        action="append",
        metavar="ENGINE=TOKENS",
        help="twin what-if: an engine's KV capacity, e.g. primary=49152 or primary=1.5x",
    )
    up.set_defaults(func=cmd_up)

    down = sub.add_parser("down", help="stop the stack `harness up` started, in reverse order")
    down.set_defaults(func=cmd_down)

    status = sub.add_parser("status", help="health of each service of the running stack")
    status.set_defaults(func=cmd_status)

    twin = sub.add_parser("twin", help="the CPU twin's tiny models")
    twin_sub = twin.add_subparsers(dest="twin_command", required=True)
    build = twin_sub.add_parser("build", help="build the tiny tokenizer and models (idempotent)")
    build.add_argument("--cache-dir", type=Path, default=None)
    build.add_argument("--force", action="store_true", help="rebuild even when inputs match")
    build.set_defaults(func=cmd_twin_build)
