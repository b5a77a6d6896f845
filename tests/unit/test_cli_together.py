"""Commands that work together: `harness load`, `nightly` and `run` use or refuse the stack
`harness up` recorded (never a second one), `harness status --env`, `--config` after every
subcommand with the file in force named, counts and durations checked at parse time, typos in
`harness tune` flags, and no two CLI modules importing each other."""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli import build_parser, main
from harness.errors import StackError
from harness.stack import state

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "infra" / "docker-compose.yml"
KEY = "twin-generated-key-0123456789"


def up_doc(target: str = "twin", compose: Path = COMPOSE, run_dir: str = "/tmp/run") -> Any:
    return {
        "target": target,
        "run_dir": run_dir,
        "compose": str(compose),
        "api_key": KEY,
        "run_id": None,
        "services": [
            {"name": "vllm-router", "role": "classifier", "url": "http://127.0.0.1:4001",
             "pid": None, "model": "tiny-classifier"},
            {"name": "vllm-primary", "role": "primary", "url": "http://127.0.0.1:4002",
             "pid": None, "model": "tiny-primary"},
            {"name": "ai-router", "role": "router", "url": "http://127.0.0.1:4003", "pid": None,
             "model": None},
        ],
    }  # fmt: skip


@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Write a fake state file of `harness up`; returns the writer."""
    monkeypatch.setenv("HARNESS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HARNESS_REPORTS_DIR", str(tmp_path / "reports"))

    def write(doc: dict[str, Any]) -> Path:
        path = state.state_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc))
        return path

    return write


# -- harness load and the stack `harness up` recorded ----------------------------------------


def test_load_measures_the_recorded_stack_and_starts_none(
    recorded: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    recorded(up_doc())
    import harness.stack.factory as factory

    def no_second_stack(*a: Any, **k: Any) -> Any:
        raise AssertionError("a second stack was started")

    reached: list[str] = []

    def up(self: Any) -> Any:
        reached.append(self.target)
        raise StackError("the recorded stack was reached")

    monkeypatch.setattr(factory, "make_backend", no_second_stack)
    monkeypatch.setattr(state.RecordedBackend, "up", up)
    code = main(["load", "steady", "--duration", "5s", "--compose", str(COMPOSE)])
    assert code == 3 and reached == ["twin"]
    assert "the recorded stack was reached" in capsys.readouterr().err


def test_recorded_backend_serves_the_state_file(
    recorded: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import harness.stack.health as health
    from harness.compose import load_stack

    monkeypatch.setattr(health, "wait_healthy", lambda *a, **k: 1.0)
    backend = state.RecordedBackend(up_doc(), load_stack(COMPOSE), tmp_path)
    stack = backend.up()
    assert stack.target == "twin" and stack.api_key == KEY
    assert stack.router.url == "http://127.0.0.1:4003"
    assert stack.primary.model_name == "tiny-primary"
    backend.down()  # leaves it up: nothing to assert but that it does not raise


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--target", "gpu"], ["a twin stack is up", "--target gpu", "down", "--target twin"]),
        (["--compose", "other.yml"], ["a twin stack is up", "other.yml", "down", "--compose"]),
        (["--kv-tokens", "primary=1000"], ["--kv-tokens", "harness down"]),
    ],
)  # fmt: skip
def test_load_refuses_a_recorded_stack_that_does_not_fit(
    recorded: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    named: list[str],
) -> None:
    recorded(up_doc())
    import harness.stack.factory as factory

    monkeypatch.setattr(factory, "make_backend", lambda *a, **k: pytest.fail("second stack"))
    argv = ["load", "steady", "--duration", "5s", *argv]
    if "--compose" not in argv:
        argv += ["--compose", str(COMPOSE)]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 3
    for text in named:
        assert text in err
    assert not list((Path(state.state_path()).parents[1] / "reports").glob("runs/*"))


def test_load_attach_is_not_the_recorded_stack(recorded: Any) -> None:
    from harness.cli.load import recorded_stack

    recorded(up_doc())
    ns = argparse.Namespace(target="attach", compose=COMPOSE, kv_tokens=None)
    assert recorded_stack(ns) is None


@pytest.mark.parametrize("command", ["nightly", "run"])
def test_pytest_jobs_refuse_while_a_stack_is_up(
    recorded: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    recorded(up_doc())
    import harness.cli.run as cli_run

    monkeypatch.setattr(cli_run, "run_main_job", lambda *a, **k: pytest.fail("second stack"))
    code = main([command, "--target", "twin"])
    err = capsys.readouterr().err
    assert code == 3 and "a twin stack is up" in err and "harness down" in err


# -- harness status --env ---------------------------------------------------------------------


def test_status_env_prints_exports_to_the_terminal_only(
    recorded: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recorded(up_doc())
    before = sorted(p for p in tmp_path.rglob("*"))
    assert main(["status", "--env"]) == 0
    out = capsys.readouterr().out
    assert "export ROUTER_URL=http://127.0.0.1:4003" in out
    assert "export PRIMARY_URL=http://127.0.0.1:4002" in out
    assert f"export ROUTER_KEY={KEY}" in out
    assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing written anywhere


def test_status_env_never_prints_a_value_of_the_secrets_file(
    recorded: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.report.planted_secrets import planted

    secret = planted("router")
    infra = tmp_path / "infra"
    infra.mkdir()
    compose = infra / "docker-compose.yml"
    compose.write_text(COMPOSE.read_text())
    (infra / ".secrets").write_text(f"ROUTER_API_KEYS={planted('router')},{secret}\n")
    doc = up_doc(target="gpu", compose=compose)
    doc["api_key"] = secret
    recorded(doc)
    assert main(["status", "--env"]) == 0
    out = capsys.readouterr().out
    assert secret not in out
    assert 'export ROUTER_KEY="$HARNESS_ROUTER_API_KEY"' in out


def test_status_env_on_attach_points_at_the_variable(
    recorded: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = up_doc(target="attach")
    doc["api_key"] = "owners-production-key"
    recorded(doc)
    assert main(["status", "--env"]) == 0
    assert "owners-production-key" not in capsys.readouterr().out


def test_status_env_with_nothing_up_exits_1(
    recorded: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--env"]) == 1
    assert "harness up" in capsys.readouterr().err


# -- --config ---------------------------------------------------------------------------------


def leaf_parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Any:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for sub in subs:
        for name, child in sub.choices.items():
            yield from leaf_parsers(child, (*path, name))


def test_config_is_accepted_after_every_subcommand() -> None:
    parser = build_parser()
    leaves = list(leaf_parsers(parser))
    assert len(leaves) > 15
    for path, leaf in leaves:
        assert "--config" in leaf._option_string_actions, " ".join(path)


def test_config_after_the_subcommand_is_the_one_used(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "mine.toml"
    cfg.write_text('[check]\ngpu_memory = "80GiB"\n')
    code = main(["check", "--compose", str(COMPOSE), "--config", str(cfg), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code in (0, 1) and doc["gpu"]["total_bytes"] == 80 * 1024**3


def test_the_config_in_force_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("HARNESS_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    main(["check", "--compose", str(COMPOSE)])
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("config: no harness.toml found")
    assert str(tmp_path) in out.splitlines()[0]
    cfg = tmp_path / "harness.toml"
    cfg.write_text("")
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    main(["check", "--compose", str(COMPOSE)])
    assert capsys.readouterr().out.splitlines()[0] == f"config: {cfg.resolve()}"


def test_the_default_compose_is_found_from_a_subdirectory(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("HARNESS_CONFIG", raising=False)
    monkeypatch.chdir(ROOT / "harness")
    assert main(["check"]) in (0, 1)
    out = capsys.readouterr().out
    assert out.startswith(f"config: {ROOT / 'harness.toml'}") and "vllm-primary" in out


# -- bad numbers stop at parse time -----------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--users", "-1"], "--users"),
        (["--users", "0"], "--users"),
        (["--duration", "-5s"], "--duration"),
        (["--duration", "0s"], "--duration"),
        (["--processes", "0"], "--processes"),
        (["--workers", "-2"], "--workers"),
    ],
)
def test_load_rejects_non_positive_numbers_naming_the_flag(
    capsys: pytest.CaptureFixture[str], argv: list[str], flag: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["load", "steady", *argv])
    assert exc.value.code == 2
    assert flag in capsys.readouterr().err


# -- harness tune: a misspelt flag ------------------------------------------------------------


def test_tune_misspelt_flag_is_bad_input_with_did_you_mean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.stack import vllm_flags

    # No vLLM to ask: the harness's own list (tests/unit/test_tune_flag_names.py asks vLLM).
    monkeypatch.setattr(vllm_flags, "sources_for", lambda target, images: [])
    compose = tmp_path / "docker-compose.yml"
    compose.write_text(COMPOSE.read_text())
    code = main(["tune", "--compose", str(compose), "vllm-primary.--max-num-seq=4"])
    err = capsys.readouterr().err
    assert code == 2
    assert "unknown vLLM flag --max-num-seq" in err and "did you mean --max-num-seqs" in err
    assert compose.read_text() == COMPOSE.read_text()


def test_tune_known_flags_pass_the_name_check() -> None:
    from harness.cli.tune_flags import check_flag_names
    from harness.compose import load_stack
    from harness.compose.edit import parse_flag_edit

    edits = [parse_flag_edit(t) for t in ("vllm-primary.--max-num-seqs=4",
                                          "vllm-router.--swap-space=4",
                                          "vllm-primary.--some-new-vllm-option=1")]  # fmt: skip
    check_flag_names(edits, load_stack(COMPOSE))


# -- no two CLI modules import each other -----------------------------------------------------


def cli_imports() -> dict[str, set[str]]:
    """Every harness.cli module and the harness.cli modules it imports, lazily or not."""
    out: dict[str, set[str]] = {}
    for path in (ROOT / "harness" / "cli").glob("*.py"):
        name = "harness.cli" if path.stem == "__init__" else f"harness.cli.{path.stem}"
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == "harness.cli":
                    found |= {f"harness.cli.{a.name}" for a in node.names}
                elif node.module.startswith("harness.cli."):
                    found.add(node.module)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("harness.cli.")}
        out[name] = found - {name}
    return out


def cycles(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Pairs of modules that reach each other."""

    def reach(start: str) -> set[str]:
        seen: set[str] = set()
        todo = list(graph.get(start, ()))
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo += graph.get(m, ())
        return seen

    reaches = {m: reach(m) for m in graph}
    return sorted((a, b) for a in graph for b in reaches[a] if a < b and a in reaches.get(b, ()))


def test_no_two_cli_modules_import_each_other() -> None:
    graph = cli_imports()
    # The package imports its subcommands to build the parser; they never import it back.
    assert all("harness.cli" not in deps for deps in graph.values())
    assert cycles(graph) == []


def test_a_circle_is_caught() -> None:
    graph = {"harness.cli.load": {"harness.cli.stack"}, "harness.cli.stack": {"harness.cli.load"}}
    assert cycles(graph) == [("harness.cli.load", "harness.cli.stack")]
