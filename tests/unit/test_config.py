from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import Settings, env_name, load_settings
from harness.errors import ConfigError


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
