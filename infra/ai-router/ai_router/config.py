"""All router configuration, read once from the environment and validated at start.

A misconfigured router must refuse to start with a message naming the variable, rather than fail
on the first request. Error messages never echo a value: URLs may carry credentials and the key
variables are secrets, so one rule for every variable is simpler than deciding case by case.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ai_router.classify_prompt import ROUTES

MIB = 1024 * 1024

# Dataclass field -> environment variable, so validation errors name what the operator sets.
ENV_NAMES: dict[str, str] = {
    "classifier_url": "ROUTER_CLASSIFIER_URL",
    "classifier_model": "ROUTER_CLASSIFIER_MODEL",
    "primary_url": "ROUTER_PRIMARY_URL",
    "primary_model": "ROUTER_PRIMARY_MODEL",
    "api_keys": "ROUTER_API_KEYS",
    "xai_base_url": "XAI_BASE_URL",
    "xai_api_key": "XAI_API_KEY",
    "xai_model": "XAI_MODEL",
    "xai_search_tools": "XAI_SEARCH_TOOLS",
    "xai_min_max_tokens": "XAI_MIN_MAX_TOKENS",
    "default_route": "ROUTER_DEFAULT_ROUTE",
    "model_name": "ROUTER_MODEL_NAME",
    "max_body_bytes": "ROUTER_MAX_BODY_BYTES",
    "classifier_timeout_s": "ROUTER_CLASSIFIER_TIMEOUT_S",
    "upstream_timeout_s": "ROUTER_UPSTREAM_TIMEOUT_S",
    "session_log": "ROUTER_SESSION_LOG",
    "session_salt": "ROUTER_SESSION_SALT",
}

_TOOL_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class ConfigError(ValueError):
    """The environment does not describe a usable router; the message names the variable."""


@dataclass(frozen=True)
class Config:
    classifier_url: str
    classifier_model: str
    primary_url: str
    primary_model: str
    # repr=False keeps secrets out of tracebacks, debug logs and test failure output.
    api_keys: tuple[str, ...] = field(repr=False)
    xai_base_url: str = "https://api.x.ai/v1"
    xai_api_key: str = field(default="", repr=False)
    xai_model: str = "grok-4-fast"
    xai_search_tools: tuple[str, ...] = ("web_search", "x_search")
    xai_min_max_tokens: int = 4096
    default_route: str = "local"
    model_name: str = "ai-router"
    max_body_bytes: int = 4 * MIB
    classifier_timeout_s: float = 30.0
    upstream_timeout_s: float = 600.0
    session_log: str | None = None
    # Keys the session log's conversation hashes. Unset: a random salt per process, so the
    # keys group one process's requests and mean nothing outside it.
    session_salt: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        # Validation lives here, not only in from_env, so configs built in code are held to the
        # same rules as the environment.
        for name in ("classifier_url", "primary_url", "xai_base_url"):
            if isinstance(getattr(self, name), str):
                # Normalised once so every caller can append "/v1/..." without doubling slashes.
                object.__setattr__(self, name, getattr(self, name).rstrip("/"))
        for name in ("classifier_url", "primary_url"):
            _check_url(name, getattr(self, name))
            if getattr(self, name).endswith("/v1"):
                raise ConfigError(f"{ENV_NAMES[name]} must be the engine base URL without /v1")
        _check_url("xai_base_url", self.xai_base_url)
        for name in ("classifier_model", "primary_model", "xai_model", "model_name"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{ENV_NAMES[name]} must be a non-empty string")
        if not isinstance(self.api_keys, tuple) or not self.api_keys:
            raise ConfigError("ROUTER_API_KEYS must list at least one key (comma-separated)")
        if not all(isinstance(k, str) and k and len(k.split()) == 1 for k in self.api_keys):
            # A bearer token cannot carry whitespace; such an entry is a paste error.
            raise ConfigError("ROUTER_API_KEYS entries must be non-empty and without whitespace")
        if not isinstance(self.xai_api_key, str):
            raise ConfigError("XAI_API_KEY must be a string")
        if not self.xai_search_tools:
            raise ConfigError("XAI_SEARCH_TOOLS must list at least one tool type")
        for tool in self.xai_search_tools:
            if not _TOOL_NAME.match(tool):
                raise ConfigError(
                    "XAI_SEARCH_TOOLS entries must be lowercase tool types like web_search"
                )
        if self.default_route not in ROUTES:
            raise ConfigError(f"ROUTER_DEFAULT_ROUTE must be one of: {', '.join(ROUTES)}")
        for name in ("xai_min_max_tokens", "max_body_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{ENV_NAMES[name]} must be a positive integer")
        for name in ("classifier_timeout_s", "upstream_timeout_s"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ConfigError(f"{ENV_NAMES[name]} must be a positive number of seconds")

    @property
    def xai_configured(self) -> bool:
        return bool(self.xai_api_key)

    @property
    def xai_tools(self) -> list[dict[str, str]]:
        """The Responses API `tools` list: server-side tools need only their type."""
        return [{"type": t} for t in self.xai_search_tools]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        kwargs: dict[str, Any] = {
            "classifier_url": _required(env, "classifier_url"),
            "classifier_model": _required(env, "classifier_model"),
            "primary_url": _required(env, "primary_url"),
            "primary_model": _required(env, "primary_model"),
            "api_keys": _csv(env, "api_keys"),
            "xai_api_key": env.get("XAI_API_KEY", "").strip(),
        }
        for name in ("xai_base_url", "xai_model", "default_route", "model_name"):
            value = env.get(ENV_NAMES[name], "").strip()
            if value:
                kwargs[name] = value
        if ENV_NAMES["xai_search_tools"] in env:
            kwargs["xai_search_tools"] = _csv(env, "xai_search_tools")
        for name in ("xai_min_max_tokens", "max_body_bytes"):
            if env.get(ENV_NAMES[name], "").strip():
                kwargs[name] = _int(env, name)
        for name in ("classifier_timeout_s", "upstream_timeout_s"):
            if env.get(ENV_NAMES[name], "").strip():
                kwargs[name] = _float(env, name)
        kwargs["session_log"] = env.get("ROUTER_SESSION_LOG", "").strip() or None
        kwargs["session_salt"] = env.get("ROUTER_SESSION_SALT", "").strip()
        return cls(**kwargs)


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(ENV_NAMES[name], "").strip()
    if not value:
        raise ConfigError(f"{ENV_NAMES[name]} is required")
    return value


def _csv(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in env.get(ENV_NAMES[name], "").split(",") if p.strip())


def _int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[ENV_NAMES[name]].strip())
    except ValueError:
        raise ConfigError(f"{ENV_NAMES[name]} must be an integer") from None


def _float(env: Mapping[str, str], name: str) -> float:
    try:
        return float(env[ENV_NAMES[name]].strip())
    except ValueError:
        raise ConfigError(f"{ENV_NAMES[name]} must be a number") from None


def _check_url(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise ConfigError(f"{ENV_NAMES[name]} must be an http(s) URL")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{ENV_NAMES[name]} must be an http(s) URL")
