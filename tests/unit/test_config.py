from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from harness.config import Settings, env_name, load_settings
from harness.config_schema import HarnessSettings, unknown_keys, unknown_variables
from harness.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_precedence_option_over_env_over_file(tmp_path: Path) -> None:
    path = tmp_path / "harness.toml"
    path.write_text('[check]\ngpu_memory = "80GiB"\nutilization_limit = 0.8\n')
    s = load_settings(path)
    assert s.get("check.gpu_memory", str, "x") == "80GiB"
    s = Settings(path=path, data=s.data, environ={"HARNESS_CHECK_GPU_MEMORY": "48GiB"})
    assert s.get("check.gpu_memory", str, "x") == "48GiB"
    s = Settings(
        path=path,
        data=s.data,
        environ={"HARNESS_CHECK_GPU_MEMORY": "48GiB"},
        overrides={"check.gpu_memory": "24GiB"},
    )
    assert s.get("check.gpu_memory", str, "x") == "24GiB"
    assert s.get("check.absent", int, 7) == 7


def test_bad_values_name_their_source(tmp_path: Path) -> None:
    path = tmp_path / "harness.toml"
    path.write_text("[check]\nutilization_limit = 'high'\n")
    with pytest.raises(ConfigError, match=r"harness\.toml: check\.utilization_limit: expected"):
        load_settings(path).get("check.utilization_limit", float, 0.85)
    env = Settings(path=None, environ={"HARNESS_CHECK_BLOCK_SIZE": "big"})
    with pytest.raises(ConfigError, match="environment variable HARNESS_CHECK_BLOCK_SIZE"):
        env.get("check.block_size", int, 16)


def test_corrupt_toml_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "harness.toml"
    path.write_text("[check\n")
    with pytest.raises(ConfigError, match=r"harness\.toml: invalid TOML"):
        load_settings(path)


def test_env_names() -> None:
    assert env_name("targets.twin.accuracy-floor") == "HARNESS_TARGETS_TWIN_ACCURACY_FLOOR"


def test_a_misspelt_key_is_an_error_naming_the_nearest_known_one(tmp_path: Path) -> None:
    bad = tmp_path / "harness.toml"
    bad.write_text('[check]\ngpu_memroy = "80GiB"\n[targets.gpu]\nrouting_acuracy_floor = 0.9\n')
    with pytest.raises(ConfigError) as err:
        load_settings(bad)
    text = str(err.value)
    assert "unknown key 'check.gpu_memroy'; did you mean 'check.gpu_memory'?" in text
    assert "'targets.gpu.routing_accuracy_floor'" in text


def test_the_shipped_harness_toml_has_only_known_keys() -> None:
    doc = tomllib.loads((ROOT / "harness.toml").read_text())
    assert unknown_keys(doc) == []


def test_an_unknown_harness_variable_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (
        unknown_variables({"HARNESS_CHECK_GPU_MEMORY": "80GiB", "HARNESS_REPORTS_DIR": "/x"}) == []
    )
    (msg,) = unknown_variables({"HARNESS_LOAD_MAX_TOKNES": "9"})
    assert (
        msg == "unknown variable HARNESS_LOAD_MAX_TOKNES; did you mean 'HARNESS_LOAD_MAX_TOKENS'?"
    )
    monkeypatch.setenv("HARNESS_TWIN_STARTUP_TIMEOUT", "5")
    with pytest.raises(ConfigError, match="HARNESS_TWIN_STARTUP_TIMEOUT_S"):
        load_settings(ROOT / "harness.toml")


def test_typed_settings_hold_every_default_and_follow_the_precedence(tmp_path: Path) -> None:
    cfg = tmp_path / "harness.toml"
    cfg.write_text("[load]\nmax_tokens = 32\n[load.duration_s]\nsteady = 5\n")
    typed = Settings(path=cfg, data=tomllib.loads(cfg.read_text()), environ={}).typed
    assert typed.load.max_tokens == 32 and typed.load.duration_s["steady"] == 5.0
    assert typed.load.duration_s["ramp"] == 60.0  # the schema's default for the rest
    assert typed.target("gpu").routing_accuracy_floor == 0.90
    env = {"HARNESS_TARGETS_GPU_ROUTING_ACCURACY_FLOOR": "0.8", "HARNESS_LOAD_MAX_TOKENS": "16"}
    typed = Settings(path=cfg, data=tomllib.loads(cfg.read_text()), environ=env).typed
    assert typed.target("gpu").routing_accuracy_floor == 0.8 and typed.load.max_tokens == 16
    assert HarnessSettings().compare.no_new_preemptions == ("steady",)


def test_harness_check_with_a_misspelt_key_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli import main

    bad = tmp_path / "bad.toml"
    bad.write_text("[slo.steady.twin]\np95_ttft_ss = 2.0\n")
    assert main(["check", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "slo.steady.twin.p95_ttft_ss: unknown SLO key 'p95_ttft_ss'" in err, err
    assert "did you mean 'p95_ttft_s'? 'p95_ttft_s' is a per-route key: put it under " in err, err


def test_harness_load_with_a_misspelt_slo_key_exits_2_before_reaching_a_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli import main

    monkeypatch.setenv("HARNESS_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("HARNESS_ROUTER_API_KEY", "unit-test-key")
    bad = tmp_path / "bad.toml"
    closed = "http://127.0.0.1:9"  # nothing listens: a run that got this far exits 3, not 2
    bad.write_text(
        f'[targets.attach]\nrouter_url = "{closed}"\nclassifier_url = "{closed}"\n'
        f'primary_url = "{closed}"\n[slo.steady]\nmax_error_rte = 0.0\n'
    )
    assert main(["--config", str(bad), "load", "steady", "--target", "attach"]) == 2
    err = capsys.readouterr().err
    assert "slo.steady.max_error_rte: unknown SLO key" in err and "'max_error_rate'" in err, err
