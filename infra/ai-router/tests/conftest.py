"""Fixtures: a router app wired to in-process fake upstreams (see router_fakes)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from ai_router.app import create_app
from ai_router.config import Config
from flask import Flask
from flask.testing import FlaskClient
from router_fakes import CLASSIFIER, OTHER_KEY, PRIMARY, ROUTER_KEY, XAI, XAI_KEY, Upstreams


@pytest.fixture
def upstreams() -> Upstreams:
    return Upstreams()


@pytest.fixture
def session_log_path(tmp_path: Path) -> Path:
    return tmp_path / "session.jsonl"


@pytest.fixture
def make_config(session_log_path: Path) -> Callable[..., Config]:
    def make(**overrides: Any) -> Config:
        values: dict[str, Any] = {
            "classifier_url": CLASSIFIER,
            "classifier_model": "classifier-model",
            "primary_url": PRIMARY,
            "primary_model": "primary-model",
            "api_keys": (ROUTER_KEY, OTHER_KEY),
            "xai_base_url": XAI,
            "xai_api_key": XAI_KEY,
            "session_log": str(session_log_path),
        }
        values.update(overrides)
        return Config(**values)

    return make


@pytest.fixture
def make_client(
    make_config: Callable[..., Config], upstreams: Upstreams
) -> Callable[..., FlaskClient]:
    def make(**overrides: Any) -> FlaskClient:
        app: Flask = create_app(make_config(**overrides), transport=httpx.MockTransport(upstreams))
        return app.test_client()

    return make


@pytest.fixture
def client(make_client: Callable[..., FlaskClient]) -> FlaskClient:
    return make_client()
