"""Configuration: defaults, parsing, and validation errors that name the variable."""

from __future__ import annotations

import pytest
from ai_router.config import Config, ConfigError
from router_fakes import CLASSIFIER, PRIMARY, ROUTER_KEY, XAI_KEY

BASE_ENV = {
    "ROUTER_CLASSIFIER_URL": CLASSIFIER,
    "ROUTER_CLASSIFIER_MODEL": "classifier-model",
    "ROUTER_PRIMARY_URL": PRIMARY,
    "ROUTER_PRIMARY_MODEL": "primary-model",
    "ROUTER_API_KEYS": f"{ROUTER_KEY}, second-key ,",
    "XAI_API_KEY": XAI_KEY,
}


def env(**changes: str | None) -> dict[str, str]:
    out = dict(BASE_ENV)
    for name, value in changes.items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def test_defaults() -> None:
    config = Config.from_env(env(XAI_API_KEY=None))
    assert config.classifier_url == CLASSIFIER
    assert config.api_keys == (ROUTER_KEY, "second-key")
    assert config.xai_base_url == "https://api.x.ai/v1"
    assert config.xai_api_key == ""
    assert not config.xai_configured
    assert config.xai_model == "grok-4-fast"
    assert config.xai_tools == [{"type": "web_search"}, {"type": "x_search"}]
    assert config.xai_min_max_tokens == 4096
    assert config.default_route == "local"
    assert config.model_name == "ai-router"
    assert config.max_body_bytes == 4 * 1024 * 1024
    assert config.classifier_timeout_s == 30
    assert config.upstream_timeout_s == 600
    assert config.session_log is None


def test_overrides() -> None:
    config = Config.from_env(
        env(
            ROUTER_CLASSIFIER_URL=CLASSIFIER + "/",
            XAI_BASE_URL="https://proxy.test/v1/",
            XAI_MODEL="grok-x",
            XAI_SEARCH_TOOLS=" web_search ",
            XAI_MIN_MAX_TOKENS="100",
            ROUTER_DEFAULT_ROUTE="search",
            ROUTER_MODEL_NAME="public",
            ROUTER_MAX_BODY_BYTES="1000",
            ROUTER_CLASSIFIER_TIMEOUT_S="2.5",
            ROUTER_UPSTREAM_TIMEOUT_S="9",
            ROUTER_SESSION_LOG="/tmp/s.jsonl",
        )
    )
    assert config.classifier_url == CLASSIFIER
    assert config.xai_base_url == "https://proxy.test/v1"
    assert config.xai_tools == [{"type": "web_search"}]
    assert config.xai_min_max_tokens == 100
    assert config.default_route == "search"
    assert config.model_name == "public"
    assert config.max_body_bytes == 1000
    assert config.classifier_timeout_s == 2.5
    assert config.upstream_timeout_s == 9
    assert config.session_log == "/tmp/s.jsonl"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ROUTER_CLASSIFIER_URL", None),
        ("ROUTER_CLASSIFIER_URL", "vllm-router:8000"),
        ("ROUTER_CLASSIFIER_URL", "http://vllm-router:8000/v1"),
        ("ROUTER_CLASSIFIER_MODEL", ""),
        ("ROUTER_PRIMARY_URL", "ftp://x"),
        ("ROUTER_PRIMARY_MODEL", None),
        ("ROUTER_API_KEYS", None),
        ("ROUTER_API_KEYS", " , ,"),
        ("XAI_BASE_URL", "not a url"),
        ("XAI_SEARCH_TOOLS", ""),
        ("XAI_SEARCH_TOOLS", "web search"),
        ("XAI_MIN_MAX_TOKENS", "many"),
        ("XAI_MIN_MAX_TOKENS", "0"),
        ("ROUTER_DEFAULT_ROUTE", "cloud"),
        ("ROUTER_MAX_BODY_BYTES", "-1"),
        ("ROUTER_CLASSIFIER_TIMEOUT_S", "soon"),
        ("ROUTER_UPSTREAM_TIMEOUT_S", "0"),
        ("ROUTER_UPSTREAM_TIMEOUT_S", "inf"),
    ],
)
def test_invalid_values_name_the_variable(variable: str, value: str | None) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_env(env(**{variable: value}))
    assert variable in str(info.value)
    if value and len(value.strip()) > 2:
        # Values are never echoed, whatever the variable.
        assert value.strip() not in str(info.value)


def test_secrets_never_in_repr_or_str() -> None:
    config = Config.from_env(env())
    for text in (repr(config), str(config)):
        assert ROUTER_KEY not in text
        assert "second-key" not in text
        assert XAI_KEY not in text
        assert "classifier-model" in text  # the rest of the config is still visible


def test_errors_never_print_secret_values() -> None:
    secret = "sk-very-secret value with spaces"
    with pytest.raises(ConfigError) as info:
        Config.from_env(env(ROUTER_API_KEYS=f"{ROUTER_KEY},{secret}"))
    assert "ROUTER_API_KEYS" in str(info.value)
    assert secret not in str(info.value)
    assert ROUTER_KEY not in str(info.value)
    assert secret not in repr(info.value)


def test_invalid_int_error_hides_the_original_value() -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_env(env(XAI_MIN_MAX_TOKENS="secretish"))
    assert "secretish" not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_direct_construction_is_validated() -> None:
    with pytest.raises(ConfigError, match="ROUTER_DEFAULT_ROUTE"):
        Config(
            classifier_url=CLASSIFIER,
            classifier_model="c",
            primary_url=PRIMARY,
            primary_model="p",
            api_keys=(ROUTER_KEY,),
            default_route="elsewhere",
        )


def test_create_app_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from ai_router.app import create_app

    for name, value in env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ROUTER_MODEL_NAME", "from-env")
    app = create_app()
    resp = app.test_client().get("/v1/models", headers={"Authorization": f"Bearer {ROUTER_KEY}"})
    assert resp.json["data"][0]["id"] == "from-env"


def test_create_app_without_required_env_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    from ai_router.app import create_app

    for name in BASE_ENV:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="ROUTER_CLASSIFIER_URL"):
        create_app()


def test_startup_log_line_names_the_settings_but_no_key(make_config, caplog) -> None:
    import logging

    from ai_router.app import create_app
    from router_fakes import OTHER_KEY, ROUTER_KEY, XAI_KEY

    with caplog.at_level(logging.INFO, logger="ai_router"):
        create_app(make_config())
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "starting with Config(" in text and "classifier_url=" in text
    for key in (ROUTER_KEY, OTHER_KEY, XAI_KEY):
        assert key not in text
