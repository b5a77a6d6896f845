"""Planted secrets never reach anything a run writes.

Known values go into `.secrets` (the compose `env_file` of ai-router and cloudflared), into a
second env file the test adds to ai-router, and into the harness's own environment. Then a twin
run goes end to end (bring-up, contracts, the xAI path through the fake, report, screenshot),
and every file it produced, plus its console output, is searched for each value.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.stack.factory import twin_capability

pytestmark = [pytest.mark.twin, pytest.mark.slow, pytest.mark.timeout(1800)]
ROOT = Path(__file__).resolve().parents[2]


def planted(kind: str) -> str:
    return f"planted-{kind}-{secrets.token_hex(12)}"


def stack_with_env_files(dest: Path, secrets_file: dict[str, str], extra: dict[str, str]) -> Path:
    """A copy of infra/ beside the real router package, with the planted env files."""
    infra = dest / "infra"
    infra.mkdir(parents=True)
    (infra / "ai-router").symlink_to(ROOT / "infra" / "ai-router")
    doc = yaml.safe_load((ROOT / "infra" / "docker-compose.yml").read_text())
    doc["services"]["ai-router"]["env_file"] = [".secrets", "router.env"]
    compose = infra / "docker-compose.yml"
    compose.write_text(yaml.safe_dump(doc, sort_keys=False))
    (infra / ".secrets").write_text("".join(f"{k}={v}\n" for k, v in secrets_file.items()))
    (infra / "router.env").write_text("".join(f"{k}={v}\n" for k, v in extra.items()))
    return compose


def test_planted_secrets_appear_in_no_output(tmp_path: Path) -> None:
    why = twin_capability()
    if why:
        pytest.skip(why)
    secrets_file = {
        "TUNNEL_TOKEN": planted("tunnel"),
        "XAI_API_KEY": planted("xai"),
        "ROUTER_API_KEYS": f"{planted('router')},{planted('router')}",
    }
    extra = {"ROUTER_EXTRA_TOKEN": planted("envfile")}
    environ = {"HF_TOKEN": planted("hf"), "OPENAI_API_KEY": planted("openai")}
    values = [
        *secrets_file["ROUTER_API_KEYS"].split(","),
        secrets_file["TUNNEL_TOKEN"],
        secrets_file["XAI_API_KEY"],
        *extra.values(),
        *environ.values(),
    ]
    compose = stack_with_env_files(tmp_path / "stack", secrets_file, extra)
    reports = tmp_path / "reports"
    env = {**os.environ, **environ, "HARNESS_REPORTS_DIR": str(reports)}
    check = subprocess.run(
        [str(Path(sys.executable).with_name("harness")), "check", "--compose", str(compose),
         "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
         "tests/acceptance/test_contracts.py", "tests/acceptance/test_xai_path.py",
         "--harness-target", "twin", "--harness-compose", str(compose)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500,
    )  # fmt: skip
    console = run.stdout + run.stderr
    assert run.returncode == 0, console[-3000:]

    run_dirs = list((reports / "runs").iterdir())
    assert len(run_dirs) == 1, run_dirs
    produced = [p for p in reports.rglob("*") if p.is_file()]
    names = {p.name for p in produced}
    # The run really wrote what it exists for: otherwise zero hits would prove nothing.
    for expected in ("record.json", "junit.xml", "report.md", "report.html",
                     "vllm-router.log", "vllm-primary.log", "ai-router.log",
                     "ai-router-session.jsonl"):  # fmt: skip
        assert expected in names, f"the run wrote no {expected}: {sorted(names)}"

    hits = []
    for path in produced:
        data = path.read_bytes()
        hits += [f"{path.relative_to(reports)}: {v[:14]}..." for v in values if v.encode() in data]
    hits += [f"console output: {v[:14]}..." for v in values if v in console + check.stdout]
    print(f"\nsearched {len(produced)} files and the console for {len(values)} planted values")
    assert hits == [], "planted secrets written by the run:\n" + "\n".join(hits)
    shutil.rmtree(reports, ignore_errors=True)
