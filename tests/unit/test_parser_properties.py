"""Property tests: no compose document and no flag list makes the parser crash.

Whatever the input, parsing returns a StackSpec / EngineArgs or raises SpecError (an
InputError, exit code 2, with a message). Anything else would reach the owner as a traceback.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.compose import parse_engine_args, parse_stack
from harness.errors import InputError

FLAGS = [
    "--gpu-memory-utilization",
    "--max-model-len",
    "--max-num-seqs",
    "--kv-cache-dtype",
    "--block-size",
    "--served-model-name",
    "--reasoning-parser",
    "--port",
    "--enforce-eager",
    "--enable-auto-tool-choice",
    "--tool-call-parser",
    "--unknown-flag",
    "--model",
]
token = st.one_of(
    st.sampled_from(FLAGS),
    st.sampled_from(["0.5", "32768", "32k", "fp8", "auto", "-1", "nan", "1e9", "", "x", "=", "3"]),
    st.text(max_size=12),
    st.sampled_from(FLAGS).map(lambda f: f + "=" + "7"),
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
KEYS = [
    "image",
    "command",
    "ports",
    "environment",
    "depends_on",
    "healthcheck",
    "deploy",
    "labels",
    "networks",
    "env_file",
    "volumes",
    "container_name",
]
service = st.dictionaries(st.sampled_from(KEYS), values, max_size=8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(token, max_size=12))
def test_flag_lists_parse_or_fail_cleanly(argv: list[str]) -> None:
    try:
        parse_engine_args(argv, where="f: service 's'")
    except InputError as exc:
        assert str(exc).startswith("f: service 's'")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(st.sampled_from(["vllm-router", "b", "c"]), service, min_size=1, max_size=3),
    st.booleans(),
)
def test_compose_documents_parse_or_fail_cleanly(services: dict, engine_image: bool) -> None:
    if engine_image and "vllm-router" in services:
        services["vllm-router"]["image"] = "vllm/vllm-openai:v1"
    text = yaml.safe_dump({"services": services})
    try:
        parse_stack(text, Path("compose.yml"))
    except InputError as exc:
        assert "compose.yml" in str(exc)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_parses_or_fails_cleanly(text: str) -> None:
    try:
        parse_stack(text, Path("compose.yml"))
    except InputError as exc:
        assert "compose.yml" in str(exc)
