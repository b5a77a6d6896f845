"""`harness tune`'s check of the edits it is given: each service is one of the compose file's,
and each flag a vLLM `serve` flag (vLLM's own list where it can be asked, else the harness's)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import InputError

# vLLM `serve` flags beyond those the compose parser types or the compose file already gives,
# for when vLLM itself cannot be asked (harness.stack.vllm_flags): a name close to one of these
# but not one of them is a typo, not a change for human review.
VLLM_SERVE_FLAGS = frozenset(
    {
        "--host", "--api-key", "--served-model-name", "--model", "--tokenizer", "--revision",
        "--max-model-len", "--max-num-seqs", "--max-num-batched-tokens", "--max-seq-len-to-capture",
        "--gpu-memory-utilization", "--kv-cache-dtype", "--kv-cache-memory-bytes", "--block-size",
        "--swap-space", "--cpu-offload-gb", "--num-gpu-blocks-override", "--dtype",
        "--quantization", "--tensor-parallel-size", "--pipeline-parallel-size", "--seed",
        "--enforce-eager", "--enable-prefix-caching", "--no-enable-prefix-caching",
        "--enable-chunked-prefill", "--no-enable-chunked-prefill", "--reasoning-parser",
        "--tool-call-parser", "--enable-auto-tool-choice", "--chat-template", "--generation-config",
        "--max-logprobs", "--disable-log-requests", "--enable-log-requests", "--disable-log-stats",
        "--trust-remote-code", "--download-dir", "--load-format", "--port", "--uvicorn-log-level",
        "--max-num-partial-prefills", "--long-prefill-token-threshold", "--scheduling-policy",
        "--async-scheduling", "--compilation-config", "--speculative-config",
        "--limit-mm-per-prompt",
        "--override-generation-config", "--enable-prompt-tokens-details", "--middleware",
        "--disable-fastapi-docs", "--disable-frontend-multiprocessing", "--headless",
        "--hf-overrides", "--rope-scaling", "--max-cudagraph-capture-size",
    }
)  # fmt: skip
HARNESS_LIST = "the harness's list of vLLM flags"


@dataclass(frozen=True)
class FlagList:
    """The engine flags a tune edit is checked against, and where they came from: vLLM's own
    serve help (`from_vllm`), else the harness's list, with why vLLM was not reachable."""

    flags: frozenset[str]
    source: str
    from_vllm: bool

    def sentence(self) -> str:
        return f"flag names checked against {self.source}"


def compose_flags(spec: Any) -> set[str]:
    """Every flag an engine of the compose file is given: the stack runs with them."""
    known: set[str] = set()
    for svc in spec.engines:
        if svc.engine is not None:
            known |= {flag for flag, _ in svc.engine.extra}
            known |= {a for a in svc.engine.to_argv() if a.startswith("--")}
    return known


def known_engine_flags(spec: Any) -> set[str]:
    """The engine flags the harness knows: the parser's typed and shaped flags, the list above,
    and every flag an engine of the compose file is given."""
    from harness.compose import engine_args

    known = set(VLLM_SERVE_FLAGS) | set(engine_args.BOOLEAN_FLAGS)
    known |= set(engine_args.MULTI_VALUE_FLAGS) | set(engine_args._TYPED)
    return known | compose_flags(spec)


def engine_flag_list(
    spec: Any, target: str, sources: Sequence[Any] | None = None, cache: Path | None = None
) -> FlagList:
    """vLLM's own serve flags for `target` (the engines' image on gpu when Docker has it, the
    twin's vllm), cached per version in `cache`; else the harness's list, saying why."""
    from harness.stack import vllm_flags

    if sources is None:
        sources = vllm_flags.sources_for(target, [s.image for s in spec.engines if s.image])
    found, reasons = vllm_flags.first_reachable(sources, cache)
    if found is not None:
        return FlagList(found.flags | compose_flags(spec), found.source, True)
    why = "; ".join(reasons) or "no vLLM to ask"
    source = f"{HARNESS_LIST}; vLLM itself was not reachable: {why}"
    return FlagList(frozenset(known_engine_flags(spec)), source, False)


def engine_flag_edits(edits: Sequence[Any], spec: Any) -> list[Any]:
    engines = {s.name for s in spec.engines}
    return [e for e in edits if e.kind == "flag" and e.service in engines]


def check_services(edits: Sequence[Any], spec: Any) -> None:
    """An edit of a service the compose file does not have: an InputError listing its
    services, before anything else is looked at."""
    import difflib

    names = list(spec.services)
    for edit in edits:
        if edit.service in spec.services:
            continue
        near = difflib.get_close_matches(edit.service, names, n=1, cutoff=0.6)
        hint = f"did you mean {near[0]}? " if near else ""
        raise InputError(
            f"{edit}: {spec.path} has no service {edit.service!r}; {hint}"
            f"its services are {', '.join(names)}"
        )


def check_flag_names(edits: Sequence[Any], spec: Any, flags: FlagList | None = None) -> None:
    """A flag edit of an engine whose name is not a vLLM flag: an InputError naming it, the
    nearest flag and the list it was checked against. Against the harness's own list, which is
    not complete, only a name close to a known one is refused (a typo); another is left to
    human review."""
    import difflib

    flags = flags or FlagList(frozenset(known_engine_flags(spec)), HARNESS_LIST, False)
    for edit in engine_flag_edits(edits, spec):
        if edit.name in flags.flags:
            continue
        cutoff = 0.0 if flags.from_vllm else 0.8
        near = difflib.get_close_matches(edit.name, sorted(flags.flags), n=1, cutoff=cutoff)
        if near:
            raise InputError(
                f"{edit.service}.{edit.name}: unknown vLLM flag {edit.name}; did you mean "
                f"{near[0]}? ({flags.sentence()})"
            )
