"""Fixtures for the harness's own unit tests: compose variants made from the real file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
REAL_COMPOSE = ROOT / "infra" / "docker-compose.yml"

Doc = dict[str, Any]


@pytest.fixture
def real_compose() -> Path:
    return REAL_COMPOSE


@pytest.fixture
def compose_variant(tmp_path: Path) -> Callable[[Callable[[Doc], None]], Path]:
    """Write a copy of infra/docker-compose.yml changed by `mutate` and return its path."""

    def make(mutate: Callable[[Doc], None]) -> Path:
        doc = yaml.safe_load(REAL_COMPOSE.read_text())
        mutate(doc)
        path = tmp_path / "docker-compose.yml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    return make
