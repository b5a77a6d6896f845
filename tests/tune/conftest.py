"""`harness tune` against the session's twin, registered as if `harness up` had started it.

A state file in a folder of the test's own names the session's services (the router's key left
out: nothing written here may hold a secret), and the compose file it runs is a copy, so that no
tune here can edit the repository's. HARNESS_REPORTS_DIR keeps the tune's own run out of the
session's reports.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from harness.stack.state import state_doc

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def up_twin(stack: Any, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A compose copy and an environment whose state file says the session's twin is up."""
    if stack.target != "twin":
        pytest.skip("harness tune is shown against the session's twin")
    compose = tmp_path / "infra" / "docker-compose.yml"
    shutil.copytree(ROOT / "infra", compose.parent, ignore=shutil.ignore_patterns(".*"))
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    doc = {**state_doc(stack), "compose": str(compose), "api_key": ""}
    (state_dir / "stack.json").write_text(json.dumps(doc), encoding="utf-8")
    env = {
        **os.environ,
        "HARNESS_STATE_DIR": str(state_dir),
        "HARNESS_REPORTS_DIR": str(tmp_path / "reports"),
    }
    return compose, env
