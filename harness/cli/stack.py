"""`harness up | down | status | twin build`: the stack commands of the CLI."""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from harness.cli.common import DEFAULT_COMPOSE, check_target_inputs, examples, raise_interrupt
from harness.config_schema import TARGET_NAMES
from harness.errors import InputError, StackError
from harness.progress import reporting
from harness.twin.substitutions import is_substitution, summary


def cmd_up(ns: argparse.Namespace) -> int:
    from harness.compose import load_stack
    from harness.config import load_settings
    from harness.report.run_dir import new_run_dir
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
    check_target_inputs(ns.target)
    run_dir = new_run_dir(ns.target)  # every input checked: only now a run directory
    # SIGTERM during bring-up tears down like Ctrl-C does.
    signal.signal(signal.SIGTERM, raise_interrupt)
    # A containers stack outlives this command: no Ryuk, and production stays stopped until
    # `make up` restores it.
    with reporting() as progress:
        try:
            backend = make_backend(
                ns.target, ns.compose, settings, run_dir, kv_overrides=kv,
                replace_running=ns.replace_running, keep_stack=True, progress=progress,
            )  # fmt: skip
            stack = backend.up()
        except InputError:
            shutil.rmtree(run_dir, ignore_errors=True)  # bad input: no stack, no run directory
            raise
    path = state.save(stack, run_id=getattr(backend, "run_id", None))
    print(f"\n{ns.target} stack is up; logs in {run_dir / 'logs'}")
    # Every note in the run directory; on the console, the substitutions as one line.
    notes = run_dir / "notes.txt"
    notes.write_text("".join(f"{note}\n" for note in stack.notes))
    for note in stack.notes:
        if not is_substitution(note):
            print(f"  note: {note}")
    line = summary(stack.notes, where=str(notes))
    if line:
        print(f"  note: {line}")
    for s in stack.services.values():
        ttl = f"{s.time_to_healthy_s:.1f} s" if s.time_to_healthy_s is not None else "-"
        kv_text = f"  KV {s.kv.tokens:,} tokens ({s.kv.max_concurrency:.2f}x)" if s.kv else ""
        print(f"  {s.name:14} {s.url:24} healthy in {ttl}{kv_text}")
    print(f"state: {path} (harness status, harness down)")
    return 0


def cmd_down(ns: argparse.Namespace) -> int:
    # Last, whatever happened: removing the harness stack does not bring production back.
    try:
        return _down(ns)
    finally:
        _report_production()


def _report_production() -> None:
    """Print who stopped the production stack, if a run did."""
    from harness.stack.containers import prod_marker

    marker = prod_marker.read()
    if marker is not None:
        print(marker.describe())


def _down(ns: argparse.Namespace) -> int:
    from harness.stack import state
    from harness.stack.procs import group_alive, stop_group

    doc = state.load()
    # Process twins a killed harness left: they have no state file, only their run's pids.json.
    swept = _sweep_processes() if ns.sweep else 0
    if doc is None:
        print("no stack recorded as up" + ("" if ns.sweep else "; nothing to stop"))
        return (_sweep(None) or swept) if ns.sweep else 0
    if doc.get("run_id") or ns.sweep:
        # Containers: everything of that run (or, with --sweep, of any run) by its label.
        code = _sweep(None if ns.sweep else doc["run_id"])
        if code:
            return code
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
    return swept


def _sweep_processes() -> int:
    """End the process groups any run's pids.json names (reports/runs/*/ and
    $HARNESS_REPORTS_DIR/runs/*/) that still run and are still the processes that were started;
    3 when one survives SIGKILL."""
    from harness.report.run_dir import DEFAULT_REPORTS, reports_root
    from harness.stack.procs import sweep_recorded

    roots = dict.fromkeys(p.resolve() for p in (DEFAULT_REPORTS, reports_root()))
    files = [f for root in roots for f in sorted(root.glob("runs/*/pids.json"))]
    outcomes = sweep_recorded(files)
    for group, outcome in outcomes:
        print(f"{group.name} (process group {group.pid}, {group.pids_file.parent}): {outcome}")
    print(f"looked at {len(files)} run(s) with pids.json: {len(outcomes)} process group(s) alive")
    return 3 if any(outcome == "still running" for _, outcome in outcomes) else 0


def _sweep(run_id: str | None) -> int:
    from harness.stack.containers.backend import container_capability, sweep

    why = container_capability(gpu=False)
    if why:
        print(f"harness down: cannot reach Docker to remove harness containers: {why}",
              file=sys.stderr)  # fmt: skip
        return 2
    removed = sweep(run_id)
    what = f"run {run_id}" if run_id else "any run"
    print(f"removed {len(removed)} container(s), network(s) and volume(s) of {what}")
    return 0


def secrets_values(compose: str | Path | None) -> set[str]:
    """Every value of the owner's env file beside the compose file (infra/.secrets), split at
    commas: values `harness status --env` never prints."""
    if not compose:
        return set()
    path = Path(compose).resolve().parent / ".secrets"
    try:
        text = path.read_text()
    except OSError:
        return set()
    out: set[str] = set()
    for line in text.splitlines():
        _, eq, value = line.strip().partition("=")
        if eq and not line.lstrip().startswith("#"):
            out |= {v.strip().strip("'\"") for v in value.split(",") if v.strip()}
    return out


def env_lines(doc: dict[str, Any]) -> list[str]:
    """Shell exports for talking to the stack by hand: each engine's and the router's URL, and
    the router's key when the harness generated it for this stack. The key of an attached
    stack is the owner's (HARNESS_ROUTER_API_KEY), and a value of infra/.secrets is never
    printed: the line then points at the variable instead."""
    import shlex

    lines = [f"# the {doc.get('target')} stack `harness up` started (run dir {doc.get('run_dir')})"]
    for svc in doc.get("services", []):
        if svc.get("role") in ("router", "classifier", "primary"):
            lines.append(f"export {svc['role'].upper()}_URL={shlex.quote(str(svc['url']))}")
    key = str(doc.get("api_key") or "")
    if doc.get("target") == "attach" or not key or key in secrets_values(doc.get("compose")):
        lines.append('export ROUTER_KEY="$HARNESS_ROUTER_API_KEY"  # the owner\'s key, not shown')
    else:
        lines.append(f"export ROUTER_KEY={shlex.quote(key)}")
    lines.append('# then: curl -s "$ROUTER_URL/v1/models" -H "Authorization: Bearer $ROUTER_KEY"')
    return lines


def cmd_status(ns: argparse.Namespace) -> int:
    if getattr(ns, "env", False):
        from harness.stack import state

        doc = state.load()
        if doc is None:
            print("harness status --env: no stack recorded as up (`harness up` first)",
                  file=sys.stderr)  # fmt: skip
            return 1
        # To this terminal only: nothing here is logged or written under reports/.
        print("\n".join(env_lines(doc)))
        return 0
    if ns.clear_production:
        from harness.stack.containers import prod_marker

        prod_marker.clear()
        return 0
    if ns.production:
        _report_production()
        return 0  # `make up` prints this before it starts anything, marker or not
    import httpx

    from harness.stack import state

    as_json = getattr(ns, "json", False)
    if not as_json:
        _report_production()
    doc = state.load()
    if doc is None:
        print(json.dumps({"up": False}) if as_json else "no stack recorded as up")
        return 1
    health: dict[str, int | str] = {}
    for svc in doc["services"]:
        try:
            health[svc["name"]] = httpx.get(svc["url"] + "/health", timeout=5).status_code
        except httpx.HTTPError as exc:
            health[svc["name"]] = type(exc).__name__
    bad = sum(code != 200 for code in health.values())
    if as_json:
        services = [{**svc, "health": health[svc["name"]]} for svc in doc["services"]]
        out = {"up": True, "target": doc["target"], "run_dir": doc["run_dir"]}
        print(json.dumps({**out, "services": services}, indent=2))
        return 0 if bad == 0 else 1
    print(f"{doc['target']} stack, run dir {doc['run_dir']}")
    for svc in doc["services"]:
        print(f"  {svc['name']:14} {svc['url']:24} health: {health[svc['name']]}")
    return 0 if bad == 0 else 1


def cmd_twin_build(ns: argparse.Namespace) -> int:
    from harness.twin.build import build_twin

    models = build_twin(ns.cache_dir, force=ns.force)
    verb = "built" if models.built else "up to date (inputs unchanged)"
    print(f"twin models {verb}: {models.classifier_dir.parent} (inputs {models.input_hash[:12]})")
    for key, value in sorted(models.metrics.items()):
        print(f"  {key}: {value:g}")
    return 0


def cmd_prefetch(ns: argparse.Namespace) -> int:
    from harness.compose import load_stack
    from harness.stack.containers.prefetch import ImageItem, prefetch_items, run_prefetch

    spec = load_stack(ns.compose)
    items = prefetch_items(spec)
    if ns.images_only or ns.weights_only:
        items = [i for i in items if isinstance(i, ImageItem) == ns.images_only]
    print(f"{ns.compose} (project {spec.project}):")
    for item in items:
        print(f"  {item.describe()}")
    if ns.dry_run:
        print("dry run: nothing pulled or downloaded")
        return 0
    from harness.stack.containers.client import docker_client

    signal.signal(signal.SIGTERM, raise_interrupt)
    # A long timeout: a pull or download stream can stay quiet for minutes between lines.
    run_prefetch(docker_client(timeout_s=1800), items)
    print("prefetch done: a bring-up now starts without pulls or downloads")
    return 0


def _add_prefetch_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    desc = (
        "Fetch, once, what a bring-up of the real stack would otherwise download inside its "
        "health budgets: the compose file's images (the vLLM one is about 10 GB) and each "
        "engine's model weights, into the volume the engines mount (e.g. ai-stack_hf-cache). "
        "Run it again after changing a model or an image tag. Images with `build:` are built by "
        "the bring-up instead. HF_TOKEN, when set, is used for gated models."
    )
    pre = sub.add_parser(
        "prefetch", help="pull images and download model weights before a bring-up",
        description=desc,
        epilog=examples(
            "harness prefetch --dry-run        # list what would be fetched; needs no Docker",
            "harness prefetch                  # images and weights",
            "harness prefetch --weights-only",
        ),
    )  # fmt: skip
    pre.add_argument(
        "--compose", type=Path, default=DEFAULT_COMPOSE, help="compose file (default: %(default)s)"
    )
    pre.add_argument(
        "--dry-run", action="store_true", help="list what would be fetched; needs no Docker"
    )
    only = pre.add_mutually_exclusive_group()
    only.add_argument("--images-only", action="store_true", help="pull images, skip weights")
    only.add_argument("--weights-only", action="store_true", help="download weights only")
    pre.set_defaults(func=cmd_prefetch)


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    up = sub.add_parser(
        "up", help="bring the stack up, one service at a time, health-gated",
        description=(
            "Start a stack and leave it running, for `harness load`, `harness run --target "
            "attach` or talking to it by hand (`harness status --env`). Services start one at a "
            "time in the compose file's order, each once the previous one is healthy. The "
            "console shows each service's URL and time to healthy; the logs are in the run "
            "directory. Stop it with `harness down`."
        ),
        epilog=examples(
            "harness up                              # the CPU twin",
            "harness up --kv-tokens primary=1.5x     # a primary KV pool of 1.5x max-model-len",
            "harness up --target gpu --replace-running",
            'eval "$(harness status --env)"          # then curl "$ROUTER_URL/v1/models"',
        ),
    )  # fmt: skip
    up.add_argument("--target", default="twin", choices=TARGET_NAMES)
    up.add_argument("--compose", type=Path, default=DEFAULT_COMPOSE)
    up.add_argument(
        "--kv-tokens",
        action="append",
        metavar="ENGINE=TOKENS",
        help="twin what-if: an engine's KV capacity, e.g. primary=49152 or primary=1.5x",
    )
    up.set_defaults(func=cmd_up)

    up.add_argument(
        "--replace-running",
        action="store_true",
        help="gpu: stop a running production stack first (restore it later with `make up`)",
    )
    down = sub.add_parser(
        "down", help="stop the stack `harness up` started, in reverse order",
        description=(
            "Stop the stack that `harness up` (or `harness tune`) left running, services in "
            "reverse start order. --sweep also clears what an interrupted run or a killed "
            "harness left behind. Says afterwards whether a harness run stopped the production "
            "stack (`make up` brings it back)."
        ),
        epilog=examples("harness down", "harness down --sweep   # and anything a killed run left"),
    )  # fmt: skip
    down.add_argument(
        "--sweep",
        action="store_true",
        help="also remove every container, network and volume the harness created, and stop "
        "every twin process a run left behind, whatever run left it (an interrupted test run, "
        "a killed harness)",
    )
    down.set_defaults(func=cmd_down)

    from harness.cli.load import add_load_parser

    add_load_parser(sub)

    _add_prefetch_parser(sub)

    status = sub.add_parser(
        "status", help="health of each service of the running stack",
        description=(
            "Is the stack `harness up` started still healthy? One line per service: its URL "
            "and its /health answer. Exit 1 when no stack is up or a service is unhealthy."
        ),
        epilog=examples(
            "harness status",
            'eval "$(harness status --env)"   # ROUTER_URL, ROUTER_KEY, ... in this shell',
            'curl -s "$ROUTER_URL/v1/models" -H "Authorization: Bearer $ROUTER_KEY"',
            "harness status --production      # did a harness run stop production?",
        ),
    )  # fmt: skip
    status.add_argument(
        "--production",
        action="store_true",
        help="only say whether a harness run stopped the production stack (always exits 0)",
    )
    status.add_argument(
        "--clear-production",
        action="store_true",
        help="forget that record (`make up` does, once every service is healthy)",
    )
    form = status.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="machine-readable output")
    form.add_argument(
        "--env", action="store_true",
        help="shell exports of the stack's URLs and router key, e.g. eval \"$(harness status "
        "--env)\", then curl \"$ROUTER_URL/v1/models\" -H \"Authorization: Bearer $ROUTER_KEY\"",
    )  # fmt: skip
    status.set_defaults(func=cmd_status)

    twin = sub.add_parser(
        "twin", help="the CPU twin's tiny models",
        description=(
            "The CPU twin runs real vLLM CPU engines with tiny models built here from the "
            "routing corpus. A twin bring-up builds them when needed; `harness twin build` "
            "does it ahead of time."
        ),
        epilog=examples("harness twin build"),
    )  # fmt: skip
    twin_sub = twin.add_subparsers(dest="twin_command", required=True)
    build = twin_sub.add_parser(
        "build", help="build the tiny tokenizer and models (idempotent)",
        description=(
            "Build the twin's tiny tokenizer, classifier and primary model (a few minutes on "
            "two cores), and print their quality figures. Nothing is rebuilt while the inputs "
            "are unchanged, unless --force."
        ),
        epilog=examples("harness twin build", "harness twin build --force"),
    )  # fmt: skip
    build.add_argument(
        "--cache-dir", type=Path, default=None,
        help="where the models are built and kept (default: HARNESS_TWIN_CACHE, else the "
        "user's cache directory)",
    )  # fmt: skip
    build.add_argument("--force", action="store_true", help="rebuild even when inputs match")
    build.set_defaults(func=cmd_twin_build)
