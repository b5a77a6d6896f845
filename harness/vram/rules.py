"""Preflight: named rules over a StackSpec and its VRAM plan, each giving findings.

A finding has a rule name, a severity, a message that says what is wrong with numbers, and a
one-line fix. `harness check` exits 1 when any finding is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum

from harness.compose import StackSpec
from harness.errors import SpecError
from harness.units import gib
from harness.vram.arch import ModelArch
from harness.vram.plan import VramPlan


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    message: str
    fix: str
    service: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {k: str(v) if isinstance(v, Severity) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class PreflightContext:
    spec: StackSpec
    plan: VramPlan
    archs: Mapping[str, ModelArch]
    utilization_limit: float = 0.85


Rule = Callable[[PreflightContext], Iterator[Finding]]
RULES: dict[str, Rule] = {}


def rule(name: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        RULES[name] = fn
        return fn

    return register


@rule("utilization-sum")
def _utilization_sum(ctx: PreflightContext) -> Iterator[Finding]:
    total = ctx.plan.utilization_sum
    if total > ctx.utilization_limit:
        parts = " + ".join(f"{e.utilization:g} ({e.service})" for e in ctx.plan.engines)
        yield Finding(
            "utilization-sum",
            Severity.ERROR,
            f"--gpu-memory-utilization adds up to {total:g} = {parts}, "
            f"above the limit of {ctx.utilization_limit:g}",
            "lower one engine's --gpu-memory-utilization so the sum stays at or under "
            f"{ctx.utilization_limit:g}",
        )


@rule("max-model-len-equal")
def _max_model_len_equal(ctx: PreflightContext) -> Iterator[Finding]:
    """The classifier sees the whole conversation the primary serves: its --max-model-len may
    not be shorter than the primary's. A longer one is what the classifier-headroom warning
    asks for, so it is no error here."""
    lens = {e.service: e.max_model_len for e in ctx.plan.engines}
    try:
        clf, pri = ctx.spec.role("classifier").name, ctx.spec.role("primary").name
    except SpecError:
        return
    if clf not in lens or pri not in lens or lens[clf] >= lens[pri]:
        return
    shown = ", ".join(f"{s}={n}" for s, n in lens.items())
    ceiling = ctx.archs[clf].max_position_embeddings if clf in ctx.archs else None
    if ceiling and ceiling < lens[pri]:
        # The classifier's model cannot reach the primary's length: only the primary can move.
        fix = (
            f"lower {pri} --max-model-len to {min(lens[clf], ceiling)} ({clf}'s model stops at "
            f"{ceiling}), or give {clf} a model with a longer context"
        )
    else:
        fix = (
            f"raise {clf} --max-model-len to {lens[pri]} (the primary's), or lower {pri} "
            f"--max-model-len to {lens[clf]}"
        )
    yield Finding(
        "max-model-len-equal",
        Severity.ERROR,
        f"the classifier is shorter than the primary ({shown}); the classifier sees the whole "
        f"conversation, so conversations of {lens[clf]:,} to {lens[pri]:,} tokens fail to "
        "classify and the router falls back",
        fix,
        clf,
    )


@rule("max-model-len-within-model")
def _within_model(ctx: PreflightContext) -> Iterator[Finding]:
    for e in ctx.plan.engines:
        limit = ctx.archs[e.service].max_position_embeddings
        if limit and e.max_model_len > limit:
            yield Finding(
                "max-model-len-within-model",
                Severity.ERROR,
                f"--max-model-len {e.max_model_len} exceeds {e.model}'s max_position_embeddings "
                f"({limit}); vLLM refuses to start",
                f"set --max-model-len <= {limit} or pick a model with a longer context",
                e.service,
            )


@rule("kv-holds-one-sequence")
def _kv_one(ctx: PreflightContext) -> Iterator[Finding]:
    for e in ctx.plan.engines:
        if e.kv_capacity_tokens < e.max_model_len:
            if e.kv_pool_bytes <= 0:
                why = (
                    f"weights {gib(e.weight_bytes)} + reserve {gib(e.activation_reserve_bytes)} "
                    f"leave no KV pool in a budget of {gib(e.budget_bytes)}"
                )
            else:
                why = (
                    f"KV pool {gib(e.kv_pool_bytes)} holds {e.kv_capacity_tokens:,} tokens, "
                    f"fewer than one {e.max_model_len:,}-token sequence"
                )
            need = (
                e.weight_bytes + e.activation_reserve_bytes + e.max_model_len * e.kv_bytes_per_token
            )
            share = need / ctx.plan.assumptions.total_bytes
            yield Finding(
                "kv-holds-one-sequence",
                Severity.ERROR,
                f"{why}; vLLM refuses to start",
                f"raise --gpu-memory-utilization to at least {share:.3f}, lower --max-model-len, "
                "or use --kv-cache-dtype fp8",
                e.service,
            )


@rule("kv-holds-max-num-seqs")
def _kv_all(ctx: PreflightContext) -> Iterator[Finding]:
    for e in ctx.plan.engines:
        if e.max_model_len <= e.kv_capacity_tokens < e.max_num_seqs * e.max_model_len:
            yield Finding(
                "kv-holds-max-num-seqs",
                Severity.WARNING,
                f"KV pool holds {e.kv_capacity_tokens:,} tokens = "
                f"{e.max_concurrency_at_max_model_len:.2f}x max-model-len: only "
                f"{e.full_sequences} of --max-num-seqs {e.max_num_seqs} full-length sequences "
                "run at once; the rest wait for KV capacity",
                "raise --gpu-memory-utilization, lower --max-num-seqs, or accept queueing at "
                "full context",
                e.service,
            )


@rule("fits-card")
def _fits(ctx: PreflightContext) -> Iterator[Finding]:
    p = ctx.plan
    if p.headroom_bytes < 0:
        yield Finding(
            "fits-card",
            Severity.ERROR,
            f"budgets {gib(p.budgets_bytes)} + CUDA contexts {gib(p.contexts_bytes)} exceed the "
            f"card's {gib(p.assumptions.total_bytes)} by {gib(-p.headroom_bytes)}",
            "lower --gpu-memory-utilization on one engine",
        )


@rule("image-latest")
def _latest(ctx: PreflightContext) -> Iterator[Finding]:
    for s in ctx.spec.services.values():
        if s.image_tag == "latest":
            yield Finding(
                "image-latest",
                Severity.WARNING,
                f"image {s.image!r} is unpinned (:latest); a pull can change the engine under you",
                "pin a version tag",
                s.name,
            )


@rule("engine-port-public")
def _ports(ctx: PreflightContext) -> Iterator[Finding]:
    for s in ctx.spec.engines:
        for p in s.ports:
            if p.host_port is not None and not p.loopback_only:
                yield Finding(
                    "engine-port-public",
                    Severity.ERROR,
                    f"port {p} is published on {p.host_ip or 'all interfaces'}; the engine has no "
                    "authentication",
                    f'publish it as "127.0.0.1:{p.host_port}:{p.container_port}"',
                    s.name,
                )


@rule("inline-secret")
def _secrets(ctx: PreflightContext) -> Iterator[Finding]:
    for service, name in ctx.spec.inline_secrets:
        yield Finding(
            "inline-secret",
            Severity.ERROR,
            f"{name} is written inline in {ctx.spec.path.name}; secrets in the compose file end up "
            "in git and in `docker inspect`",
            f"move {name} to infra/.secrets (env_file) or reference ${{{name}}}",
            service,
        )


def run_preflight(ctx: PreflightContext) -> list[Finding]:
    """Every rule, in registration order; errors first within the result."""
    findings = [f for fn in RULES.values() for f in fn(ctx)]
    order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
    return sorted(findings, key=lambda f: order[f.severity])
