"""`harness check --against`: every changed item, each a safe knob or for human review."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cli import main
from harness.compose.diff import diff_texts, read_ref
from harness.errors import InputError

Doc = dict[str, Any]


def changed(real_compose: Path, mutate: Callable[[Doc], None]) -> dict[str, tuple[str, str]]:
    """{item: (kind, after)} of the real file against a changed copy of it."""
    text = real_compose.read_text()
    doc = yaml.safe_load(text)
    mutate(doc)
    return {c.item: (c.kind, str(c.after)) for c in diff_texts(text, yaml.safe_dump(doc))}


def cmd(doc: Doc, service: str) -> list[str]:
    command: list[str] = doc["services"][service]["command"]
    return command


def set_flag(doc: Doc, service: str, flag: str, value: str) -> None:
    """--flag's value in the service's command list."""
    c = cmd(doc, service)
    c[c.index(flag) + 1] = value


def test_the_file_against_itself_has_no_changes(real_compose: Path) -> None:
    assert diff_texts(real_compose.read_text(), real_compose.read_text()) == []


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--gpu-memory-utilization", "0.6"),
        ("--max-model-len", "16384"),
        ("--max-num-seqs", "4"),
        ("--kv-cache-dtype", "auto"),
    ],
)
def test_engine_knobs_are_safe(real_compose: Path, flag: str, value: str) -> None:
    got = changed(real_compose, lambda d: set_flag(d, "vllm-primary", flag, value))
    assert got == {f"vllm-primary {flag}": ("safe knob", value)}


def test_the_routers_xai_settings_are_safe(real_compose: Path) -> None:
    def mutate(d: Doc) -> None:
        d["services"]["ai-router"]["environment"]["XAI_MODEL"] = "grok-4"
        d["services"]["ai-router"]["environment"]["XAI_SEARCH_TOOLS"] = "web_search"

    assert set(changed(real_compose, mutate).values()) == {
        ("safe knob", "grok-4"),
        ("safe knob", "web_search"),
    }


def put(*path: Any) -> Callable[[Doc], None]:
    """A mutation that sets doc[path[0]][path[1]]... to the last argument."""
    *keys, last, value = path

    def mutate(doc: Doc) -> None:
        node: Any = doc
        for key in keys:
            node = node[key]
        node[last] = value

    return mutate


def rename_router(doc: Doc) -> None:
    doc["services"]["ai-router-2"] = doc["services"].pop("ai-router")


S = "services"


@pytest.mark.parametrize(
    ("mutate", "item"),
    [
        (put(S, "vllm-router", "command", 0, "Qwen/Qwen2.5-7B-Instruct"), "vllm-router model"),
        (put(S, "vllm-primary", "image", "vllm/vllm-openai:v0.34.0"), "vllm-primary image"),
        (put(S, "vllm-router", "ports", ["0.0.0.0:8001:8000"]), "vllm-router ports"),
        (put("networks", "ai-network", "driver", "overlay"), "networks.ai-network"),
        (put(S, "cloudflared", "command", 2, "other"), "cloudflared command"),
        (put(S, "traefik", "container_name", "proxy"), "traefik container_name"),
        (rename_router, "ai-router-2 (service)"),
        (put("name", "ai-stack-2"), "name"),
        (put(S, "vllm-primary", "command", 2, "big"), "vllm-primary --served-model-name"),
        (
            put(S, "ai-router", "labels", "traefik.enable", "false"),
            "ai-router labels.traefik.enable",
        ),
    ],
)
def test_human_review_items(real_compose: Path, mutate: Callable[[Doc], None], item: str) -> None:
    got = changed(real_compose, mutate)
    assert item in got and got[item][0] == "human review", got


def test_a_renamed_service_is_two_items_not_one_per_field(real_compose: Path) -> None:
    got = changed(real_compose, rename_router)
    assert set(got) == {"ai-router (service)", "ai-router-2 (service)"}


def test_a_longer_start_period_is_safe_a_shorter_one_is_not(real_compose: Path) -> None:
    def period(value: str) -> Callable[[Doc], None]:
        return put(S, "vllm-primary", "healthcheck", "start_period", value)

    assert changed(real_compose, period("30m")) == {
        "vllm-primary healthcheck.start_period": ("safe knob", "30m")
    }
    assert changed(real_compose, period("5m"))["vllm-primary healthcheck.start_period"][0] == (
        "human review"
    )


def test_secret_values_are_masked(real_compose: Path) -> None:
    got = changed(real_compose, put(S, "ai-router", "environment", "ROUTER_API_KEYS", "plain"))
    assert got == {"ai-router environment.ROUTER_API_KEYS": ("human review", "***")}


def test_a_git_ref_and_a_file(real_compose: Path, tmp_path: Path) -> None:
    text, where = read_ref("HEAD", real_compose)
    assert where == "HEAD:infra/docker-compose.yml" and "vllm-router" in text
    copy = tmp_path / "old.yml"
    copy.write_text("services: {}\n")
    assert read_ref(str(copy), real_compose) == ("services: {}\n", str(copy))
    with pytest.raises(InputError, match="--against no-such-ref: neither a file nor a git ref"):
        read_ref("no-such-ref", real_compose)


def test_check_against_exits_1_naming_the_unreviewed_item(
    real_compose: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = tmp_path / "last-good.yml"
    old.write_text(real_compose.read_text().replace("traefik:v3.1", "traefik:v3.0"))
    argv = ["check", "--gpu-memory", "96GiB", "--compose", str(real_compose), "--against", str(old)]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert "human review  traefik image: traefik:v3.0 -> traefik:v3.1" in out
    assert "not reviewed: traefik image" in err
    assert main([*argv, "--reviewed"]) == 0
    capsys.readouterr()
    assert main([*argv, "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True and doc["against"]["unreviewed"] == ["traefik image"]


def test_stackctl_keeps_the_file_that_started_cleanly() -> None:
    script_dir = Path(__file__).parents[2] / "infra"
    script = (script_dir / "stackctl.sh").read_text()
    assert 'cp "$compose" "$infra_dir/.last-good-compose.yml"' in script
    for path in ("infra/.last-good-compose.yml", "infra/docker-compose.yml.prev"):
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=script_dir.parent)
        assert ignored.returncode == 0, f"{path} is not git-ignored"
