"""Textual edits of the compose file: one value line changes, comments and order stay."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
import yaml

from harness.compose import load_stack
from harness.compose.edit import apply_edits, parse_env_edit, parse_flag_edit
from harness.errors import InputError


def changed_lines(before: str, after: str) -> list[str]:
    return [
        ln
        for ln in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if ln[:1] in "+-" and not ln.startswith(("+++", "---"))
    ]


def edit(text: str, *changes: str, env: tuple[str, ...] = ()) -> str:
    edits = [parse_flag_edit(c) for c in changes] + [parse_env_edit(e) for e in env]
    return apply_edits(text, edits, "docker-compose.yml")


def test_a_flag_changes_its_value_line_only(real_compose: Path, tmp_path: Path) -> None:
    text = real_compose.read_text()
    out = edit(text, "vllm-primary.--max-num-seqs=4")
    assert changed_lines(text, out) == ['-      - "3"', '+      - "4"']
    # The router's --max-num-seqs, the same text one service up, is untouched.
    (tmp_path / "docker-compose.yml").write_text(out)
    spec = load_stack(tmp_path / "docker-compose.yml")
    assert spec.primary.engine is not None and spec.primary.engine.max_num_seqs == 4
    assert spec.classifier.engine is not None and spec.classifier.engine.max_num_seqs == 3
    assert out.count("#") == text.count("#")


def test_several_edits_at_once(real_compose: Path) -> None:
    text = real_compose.read_text()
    out = edit(
        text,
        "vllm-router.model=Qwen/Qwen2.5-7B-Instruct",
        "traefik.image=traefik:v3.2",
        env=("ai-router.XAI_MODEL=grok-4", "ai-router.XAI_MIN_MAX_TOKENS=8192"),
    )
    assert changed_lines(text, out) == [
        "-      - Qwen/Qwen2.5-3B-Instruct",
        "+      - Qwen/Qwen2.5-7B-Instruct",
        "-      XAI_MODEL: grok-4-fast",
        "+      XAI_MODEL: grok-4",
        '-      XAI_MIN_MAX_TOKENS: "4096"',
        '+      XAI_MIN_MAX_TOKENS: "8192"',
        "-    image: traefik:v3.1",
        "+    image: traefik:v3.2",
    ]


def test_an_absent_flag_is_appended_like_the_other_items(real_compose: Path) -> None:
    text = real_compose.read_text()
    out = edit(text, "vllm-router.--block-size=32")
    assert changed_lines(text, out) == ["+      - --block-size", '+      - "32"']


def test_flag_equals_value_form_and_list_environment() -> None:
    text = (
        "services:\n"
        "  engine:\n"
        "    image: vllm/vllm-openai:v0.33.0  # pinned\n"
        "    command:\n"
        "    - model-a\n"
        "    - --max-num-seqs=3   # why three\n"
        "    environment:\n"
        "    - XAI_MODEL=a\n"
    )
    out = edit(text, "engine.--max-num-seqs=5", env=("engine.XAI_MODEL=b", "engine.NEW=1"))
    assert out == (
        "services:\n"
        "  engine:\n"
        "    image: vllm/vllm-openai:v0.33.0  # pinned\n"
        "    command:\n"
        "    - model-a\n"
        "    - --max-num-seqs=5   # why three\n"
        "    environment:\n"
        "    - XAI_MODEL=b\n"
        "    - NEW=1\n"
    )


def test_crlf_and_quoting_survive() -> None:
    text = "services:\r\n  e:\r\n    image: 'vllm/vllm-openai:v1'\r\n    command: [\"m\"]\r\n"
    out = edit(text, "e.image=vllm/vllm-openai:v2")
    assert out == text.replace("v1", "v2")
    assert yaml.safe_load(out)["services"]["e"]["image"] == "vllm/vllm-openai:v2"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("vllm-nope.--max-num-seqs=4", "no service 'vllm-nope'"),
        ("cloudflared.--no-autoupdate=x", "service 'cloudflared' is not a vLLM engine"),
        ("ai-router.--port=1", "service 'ai-router' is not a vLLM engine"),
        ("vllm-primary.--served-model-name=", "expected SERVICE.--flag=VALUE"),
        ("vllm-primary.weights=x", "'weights' is not a flag"),
    ],
)
def test_what_cannot_be_edited_is_named(real_compose: Path, change: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        edit(real_compose.read_text(), change)


def test_secrets_never_go_into_the_compose_file() -> None:
    with pytest.raises(InputError, match=r"ai-router\.XAI_API_KEY: a secret belongs in"):
        parse_env_edit("ai-router.XAI_API_KEY=sk-123")
