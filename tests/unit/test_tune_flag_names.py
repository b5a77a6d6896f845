"""`harness tune` checks a flag's name against vLLM's own serve flags, read from the twin's vllm
or the engines' image and cached per version, and suggests the nearest; where vLLM cannot be
asked it checks against the harness's list and says so. An unknown service lists the services.
vLLM's help is injected here; one test reads the real twin's vllm where it is installed."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.cli import main
from harness.cli.exit_codes import BAD_INPUT
from harness.cli.tune_flags import FlagList, check_flag_names, check_services, engine_flag_list
from harness.compose import load_stack
from harness.compose.edit import parse_env_edit, parse_flag_edit
from harness.errors import CapabilityError, InputError
from harness.stack import vllm_flags
from harness.stack.vllm_flags import HelpSource, first_reachable, flags_from_help, read_flags

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "infra" / "docker-compose.yml"

# The shape of vLLM 0.32's `--help=all`: a usage block, then option lines under groups, with
# descriptions that name other flags in passing.
HELP = """\
usage: api_server.py [-h] [--headless] [--max-num-seqs MAX_NUM_SEQS]
                     [--enable-prefix-caching | --no-enable-prefix-caching]

vLLM OpenAI-Compatible RESTful API server.

options:
  -h, --help            show this help message and exit
  --headless            Run in headless mode.

CacheConfig:
  --gpu-memory-utilization GPU_MEMORY_UTILIZATION, --device-memory-utilization GPU_MEM_UTIL
                        The fraction of GPU memory to be used. Overridden by
                        --kv-cache-memory-bytes when given.
  --kv-cache-memory-bytes KV_CACHE_MEMORY_BYTES
                        Size of KV Cache per GPU in bytes.
  --max-model-len MAX_MODEL_LEN, -O MAX_MODEL_LEN
                        Model context length. See --removed-in-passing.
"""


def source(
    help_text: str = HELP, key: str = "vLLM 0.32.0", calls: list[str] | None = None
) -> HelpSource:
    def read() -> str:
        if calls is not None:
            calls.append("help")
        return help_text

    return HelpSource("a test vllm", lambda: key, read)


def unreachable(reason: str) -> HelpSource:
    def fail() -> str:
        raise CapabilityError(reason)

    return HelpSource("nowhere", fail, fail)


def test_the_flags_are_the_option_strings_not_what_descriptions_mention() -> None:
    flags = flags_from_help(HELP)
    assert {"--max-num-seqs", "--gpu-memory-utilization", "--device-memory-utilization",
            "--enable-prefix-caching", "--no-enable-prefix-caching", "--kv-cache-memory-bytes",
            "--max-model-len", "--headless"} <= flags  # fmt: skip
    assert "--removed-in-passing" not in flags and "--help" not in flags


def test_the_list_is_read_once_per_version(tmp_path: Path) -> None:
    calls: list[str] = []
    first = read_flags(source(calls=calls), tmp_path)
    again = read_flags(source(help_text="", calls=calls), tmp_path)
    assert calls == ["help"] and again.flags == first.flags
    assert again.source == "the serve flags of vLLM 0.32.0, read from a test vllm"
    read_flags(source(key="vLLM 0.33.0", calls=calls), tmp_path)
    assert calls == ["help", "help"]  # another version is read again
    assert len(list(tmp_path.glob("*.json"))) == 2


def test_a_help_without_flags_is_not_a_list(tmp_path: Path) -> None:
    with pytest.raises(CapabilityError, match="names no flag"):
        read_flags(source(help_text="Traceback: ImportError"), tmp_path)


def test_the_first_reachable_source_wins_and_the_others_say_why(tmp_path: Path) -> None:
    found, reasons = first_reachable([unreachable("image x is not local"), source()], tmp_path)
    assert found is not None and "--max-num-seqs" in found.flags
    assert reasons == ["image x is not local"]


def edits(*texts: str) -> list[object]:
    return [parse_flag_edit(t) for t in texts]


def test_an_unknown_flag_names_the_nearest_and_the_list_it_was_checked_against(
    tmp_path: Path,
) -> None:
    spec = load_stack(COMPOSE)
    flags = engine_flag_list(spec, "twin", [source()], tmp_path)
    assert flags.from_vllm
    with pytest.raises(InputError) as exc:
        check_flag_names(edits("vllm-primary.--gpu-memory-utilisation=0.5"), spec, flags)
    text = str(exc.value)
    assert text.startswith("vllm-primary.--gpu-memory-utilisation: unknown vLLM flag")
    assert "did you mean --gpu-memory-utilization?" in text
    assert (
        "(flag names checked against the serve flags of vLLM 0.32.0, read from a test vllm)" in text
    )
    # Against vLLM's own list even a name close to nothing is refused, with its nearest.
    with pytest.raises(InputError, match="unknown vLLM flag --frobnicate; did you mean"):
        check_flag_names(edits("vllm-primary.--frobnicate=1"), spec, flags)
    check_flag_names(edits("vllm-primary.--max-num-seqs=4"), spec, flags)
    # A flag the compose file already gives its engines is one the stack runs with.
    check_flag_names(edits("vllm-primary.--reasoning-parser=qwen3"), spec, flags)


def test_without_vllm_the_harness_list_is_used_and_said(tmp_path: Path) -> None:
    spec = load_stack(COMPOSE)
    flags = engine_flag_list(spec, "twin", [unreachable("vllm is not installed for /py")])
    assert not flags.from_vllm
    assert flags.sentence() == (
        "flag names checked against the harness's list of vLLM flags; vLLM itself was not "
        "reachable: vllm is not installed for /py"
    )
    with pytest.raises(InputError, match="did you mean --max-num-seqs\\? \\(flag names checked "
                       "against the harness's list"):  # fmt: skip
        check_flag_names(edits("vllm-primary.--max-num-seq=4"), spec, flags)
    # Its list is not complete: a name far from every known one is left to human review.
    check_flag_names(edits("vllm-primary.--some-new-vllm-option=1"), spec, flags)


def test_an_unknown_service_lists_the_services() -> None:
    spec = load_stack(COMPOSE)
    with pytest.raises(InputError) as exc:
        check_services([parse_flag_edit("vllm-primay.--max-num-seqs=4")], spec)
    text = str(exc.value)
    assert "no service 'vllm-primay'" in text and "did you mean vllm-primary?" in text
    assert "its services are vllm-router, vllm-primary, ai-router" in text
    with pytest.raises(InputError, match="no service 'nginx'"):
        check_services([parse_env_edit("nginx.X=1")], spec)


def test_gpu_asks_the_engines_image_first_then_the_twins_vllm() -> None:
    names = [s.name for s in vllm_flags.sources_for("gpu", ["vllm/vllm-openai:v0.33.0"] * 2)]
    assert names[0] == "image vllm/vllm-openai:v0.33.0" and len(names) == 2
    assert names[1].startswith("the twin's vllm")
    (twin,) = vllm_flags.sources_for("twin", ["x"])
    assert twin.name.startswith("the twin's vllm")


def test_an_image_docker_does_not_have_is_never_pulled(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.stack.containers import client

    monkeypatch.setattr(client, "docker_client", lambda timeout_s=60: object())
    monkeypatch.setattr(client, "image_present", lambda c, image: False)
    with pytest.raises(CapabilityError, match="not in the local Docker image store"):
        vllm_flags.image_source("vllm/vllm-openai:v9").key()


@pytest.fixture
def injected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[[HelpSource], None]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def use(s: HelpSource) -> None:
        monkeypatch.setattr(vllm_flags, "sources_for", lambda target, images: [s])

    return use


def test_the_command_refuses_a_misspelt_flag_before_touching_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], injected: Callable[[HelpSource], None]
) -> None:
    injected(source())
    compose = tmp_path / "docker-compose.yml"
    compose.write_text(COMPOSE.read_text())
    code = main(["tune", "--target", "twin", "--compose", str(compose),
                 "vllm-primary.--max-num-seq=4"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == BAD_INPUT
    assert "unknown vLLM flag --max-num-seq; did you mean --max-num-seqs?" in err
    assert "tune: flag names checked against the serve flags of vLLM 0.32.0, read from" in out
    assert compose.read_text() == COMPOSE.read_text()
    assert list((tmp_path / "cache").rglob("*.json")), "the list is cached"


def test_the_command_lists_the_services_for_an_unknown_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], injected: Callable[[HelpSource], None]
) -> None:
    injected(unreachable("not asked"))
    code = main(
        ["tune", "--target", "twin", "--compose", str(COMPOSE), "vllm-main.--max-num-seqs=4"]
    )
    assert code == BAD_INPUT
    assert "its services are vllm-router, vllm-primary" in capsys.readouterr().err


def _twin_has_vllm() -> bool:
    return importlib.util.find_spec("vllm") is not None or bool(
        vllm_flags.os.environ.get(vllm_flags.TWIN_RUNTIME_ENV)
    )


@pytest.mark.twin
@pytest.mark.slow
@pytest.mark.skipif(not _twin_has_vllm(), reason="the twin's vllm is not installed here")
def test_the_real_twin_vllm_gives_its_serve_flags(tmp_path: Path) -> None:
    found = read_flags(vllm_flags.twin_source(), tmp_path)
    assert {"--max-num-seqs", "--gpu-memory-utilization", "--max-model-len",
            "--kv-cache-dtype", "--num-gpu-blocks-override"} <= found.flags  # fmt: skip
    assert "--gpu-memory-utilisation" not in found.flags
    assert found.source.startswith("the serve flags of vLLM 0.")
    flags = FlagList(found.flags, found.source, True)
    spec = load_stack(COMPOSE)
    with pytest.raises(InputError, match="did you mean --max-num-seqs"):
        check_flag_names(edits("vllm-primary.--max-num-seq=4"), spec, flags)
