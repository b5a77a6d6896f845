"""Each profile's locustfile runs that profile's shape: locust takes the first concrete shape
class in a locustfile's namespace, imported ones included. Read in a child process: importing
locust monkey-patches the interpreter with gevent, which must never reach pytest's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harness.load.profiles import PROFILES

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json, sys
from locust.util.load_locustfile import load_locustfile
out = {}
for path in sys.argv[1:]:
    _users, shapes = load_locustfile(path)
    out[path] = [[type(s).__name__, type(s).profile] for s in shapes]
print(json.dumps(out))
"""


def test_each_profile_locustfile_runs_its_own_shape() -> None:
    paths = {
        p: str(ROOT / "tests" / "load" / f"locustfile_{p.replace('-', '_')}.py") for p in PROFILES
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *paths.values()],
        capture_output=True, text=True, timeout=120, check=True, cwd=ROOT,
    )  # fmt: skip
    found = json.loads(done.stdout.strip().splitlines()[-1])
    wrong = {
        p: found[path]
        for p, path in paths.items()
        if [profile for _name, profile in found[path]] != [p]
    }
    assert not wrong, f"locust would run another profile's shape (it takes the first): {wrong}"
