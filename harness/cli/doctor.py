"""`harness doctor`: can `make gpu` start on this box? One line per check, before the first run."""

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
must set (never their values), and whether production is running or marked stopped.

Each check prints `OK`, `FAIL` with what to do, or `SKIP` where an earlier failure makes it
impossible. Every check is bounded in time. Exit 0 when all are OK, 1 otherwise."""

EXAMPLES = examples(
    "harness doctor                 # on the GPU box, before the first `make gpu`",
    "harness doctor --json",
)


def cmd_doctor(ns: argparse.Namespace) -> int:
    from harness.stack.doctor_checks import run_checks

    checks = run_checks(ns.compose)
    ok = all(c.ok for c in checks)
    if ns.json:
        doc = {"ok": ok, "checks": [{"name": c.name, "status": c.status, "detail": c.detail}
                                    for c in checks]}  # fmt: skip
        print(json.dumps(doc, indent=2))
    else:
        for check in checks:
            print(check.line())
        print("ready: `make gpu` can start" if ok else "not ready: fix each FAIL above, then rerun")
    return OK if ok else FAILED


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    doctor = sub.add_parser(
        "doctor", help="can `make gpu` start here: driver, Docker, toolkit, images, disk, secrets",
        description=DESCRIPTION, epilog=EXAMPLES,
    )  # fmt: skip
    doctor.add_argument("--compose", type=Path, default=Path("infra/docker-compose.yml"))
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.set_defaults(func=cmd_doctor)
