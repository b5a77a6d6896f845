"""`harness check`: exit codes, the one-line reasons, JSON, and speed of the real command."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from compose_helpers import set_flag

from harness.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["check", "--gpu-memory", "96GiB", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_default_stack_exits_0_and_prints_the_table(capsys, real_compose: Path) -> None:
    code, out, _ = run(capsys, "--compose", str(real_compose))
    assert code == 0
    assert "vllm-router" in out and "vllm-primary" in out
    assert "Start order: vllm-router -> vllm-primary -> ai-router" in out
    assert "OK: no errors" in out


@pytest.mark.parametrize(
    ("service", "flag", "value", "rule"),
    [
        ("vllm-router", "--gpu-memory-utilization", "0.30", "utilization-sum"),
        ("vllm-router", "--max-model-len", "8192", "max-model-len-equal"),
        ("vllm-primary", "--gpu-memory-utilization", "0.36", "kv-holds-one-sequence"),
    ],
)
def test_broken_stacks_exit_1_naming_the_rule(capsys, compose_variant, service, flag, value, rule):
    path = compose_variant(lambda d: set_flag(d, service, flag, value))
    code, out, _ = run(capsys, "--compose", str(path))
    assert code == 1
    line = next(ln for ln in out.splitlines() if ln.startswith("ERROR") and rule in ln)
    assert len(line) > len(rule) + 20  # a reason a person can act on
    assert "fix:" in out and "FAIL: " in out


def test_yaml_syntax_error_exits_2_naming_file_and_line(capsys, tmp_path: Path) -> None:
    bad = tmp_path / "docker-compose.yml"
    bad.write_text("services:\n  vllm-router:\n    image: [unclosed\n")
    code, _, err = run(capsys, "--compose", str(bad))
    assert code == 2
    assert f"{bad}:4:" in err and "YAML syntax error" in err
    assert len(err.strip().splitlines()) == 1


def test_non_numeric_flag_exits_2_naming_service_and_flag(capsys, compose_variant) -> None:
    path = compose_variant(lambda d: set_flag(d, "vllm-primary", "--max-num-seqs", "three"))
    code, _, err = run(capsys, "--compose", str(path))
    assert code == 2
    assert "service 'vllm-primary'" in err and "--max-num-seqs expects an integer" in err


def test_unknown_model_exits_2(capsys, compose_variant) -> None:
    def unknown(d):
        d["services"]["vllm-router"]["command"][0] = "acme/not-a-model"

    code, _, err = run(capsys, "--compose", str(compose_variant(unknown)))
    assert code == 2 and "'vllm-router'" in err and "acme/not-a-model" in err


def test_bad_gpu_memory_exits_2(capsys, real_compose: Path) -> None:
    code = main(["check", "--compose", str(real_compose), "--gpu-memory", "huge"])
    assert code == 2
    assert "gpu_memory" in capsys.readouterr().err


def test_json_has_per_engine_kv_figures_and_findings(capsys, compose_variant) -> None:
    path = compose_variant(
        lambda d: set_flag(d, "vllm-primary", "--gpu-memory-utilization", "0.45")
    )
    code, out, _ = run(capsys, "--compose", str(path), "--json")
    doc = json.loads(out)
    assert code == 0 and doc["ok"] is True
    primary = doc["engines"]["vllm-primary"]
    assert primary["kv_bytes_per_token"] == 131072
    assert primary["kv_capacity_tokens"] > 32768
    assert 2 <= primary["max_concurrency_at_max_model_len"] < 3
    # The classifier-headroom warning depends on the tokenizer files this machine holds.
    findings = [f for f in doc["findings"] if f["rule"] != "classifier-headroom"]
    assert [(f["rule"], f["severity"], f["service"]) for f in findings] == [
        ("kv-holds-max-num-seqs", "warning", "vllm-primary")
    ]
    # The warning states the pool and what it means with the figures of this very check.
    message, fix = findings[0]["message"], findings[0]["fix"]
    pool = primary["kv_capacity_tokens"]
    assert f"KV pool holds {pool:,} tokens" in message, message
    assert f"{primary['max_concurrency_at_max_model_len']:.2f}x max-model-len" in message, message
    assert "only 2 of --max-num-seqs 3 full-length sequences run at once" in message, message
    assert "--gpu-memory-utilization" in fix and "--max-num-seqs" in fix, fix


def test_console_script_answers_well_under_a_second(real_compose: Path) -> None:
    exe = Path(sys.executable).with_name("harness")
    started = time.monotonic()
    proc = subprocess.run(
        [str(exe), "check", "--compose", str(real_compose), "--gpu-memory", "96GiB"],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    print(f"harness check took {elapsed:.3f} s")  # reported, not asserted: shared machines
