"""`harness doctor`: can `make gpu` start on this box, and is the owner's tunnel sound? One line
per check, before the first run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness.cli.common import examples
from harness.cli.exit_codes import FAILED, OK

DESCRIPTION = """\
Check, before the first `make gpu`, what its bring-up needs: the NVIDIA driver (NVML), the
compose file, a Docker engine with the NVIDIA container toolkit, a GPU container of the compose
file's vLLM image (which also catches a driver too old for the image's CUDA), the images and
weights that `make prefetch` fetches, free disk on Docker's data root, the names `.secrets`
must set (never their values), whether production is running or marked stopped, and the
owner's cloudflared: its token is set and well formed (never printed), and every ingress rule
it serves points at traefik. `--target attach` checks only the compose file, Docker (a WARN
without it: attach needs none) and the tunnel: an attached stack is tested as it runs.

Each check prints `OK`, `FAIL` with what to do, `WARN` where the answer is not known here (no
cloudflared container, nothing logged yet), or `SKIP` where an earlier failure makes it
impossible. Every check is bounded in time. Exit 0 when none FAILs or SKIPs, 1 otherwise."""

EXAMPLES = examples(
    "harness doctor                 # on the GPU box, before the first `make gpu`",
    "harness doctor --json",
    "harness doctor --target attach  # the box `make nightly` attaches to",
)


def cmd_doctor(ns: argparse.Namespace) -> int:
    from harness.stack.doctor_checks import ready, run_checks

    checks = run_checks(ns.compose, ns.target)
    ok = ready(checks)
    if ns.json:
        doc = {"ok": ok, "checks": [{"name": c.name, "status": c.status, "detail": c.detail}
                                    for c in checks]}  # fmt: skip
        print(json.dumps(doc, indent=2))
    else:
        for check in checks:
            print(check.line())
        what = "`make gpu` can start" if ns.target == "gpu" else "no check failed"
        warned = sum(c.status == "WARN" for c in checks)
        also = f" ({warned} WARN above: not known here)" if warned else ""
        print(f"ready: {what}{also}" if ok else "not ready: fix each FAIL above, then rerun")
    return OK if ok else FAILED


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    doctor = sub.add_parser(
        "doctor",
        help="can `make gpu` start here: driver, Docker, toolkit, images, disk, secrets, tunnel",
        description=DESCRIPTION, epilog=EXAMPLES,
    )  # fmt: skip
    doctor.add_argument("--compose", type=Path, default=Path("infra/docker-compose.yml"))
    doctor.add_argument(
        "--target", choices=("gpu", "attach"), default="gpu",
        help="gpu: what `make gpu` needs, and the tunnel (default); attach: the tunnel only",
    )  # fmt: skip
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.set_defaults(func=cmd_doctor)
