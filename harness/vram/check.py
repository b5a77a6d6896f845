"""`harness check`: the stack spec, the VRAM plan and the preflight findings, in one value."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from harness.compose import StackSpec, load_stack
from harness.config import Settings
from harness.errors import ConfigError, InputError
from harness.units import parse_size
from harness.vram.arch import ModelArch, resolve_arch
from harness.vram.plan import MemoryAssumptions, VramPlan, plan
from harness.vram.rules import Finding, PreflightContext, Severity, run_preflight

DEFAULT_COMPOSE = Path("infra/docker-compose.yml")


class Headroom(Protocol):
    """The classifier's headroom as harness.routing.headroom measures it (that package sits
    beside this one, so the value comes in through `run_check`'s callback)."""

    @property
    def classifier(self) -> str: ...
    @property
    def primary(self) -> str: ...
    @property
    def band(self) -> tuple[int, int] | None: ...
    @property
    def caveat(self) -> str: ...
    def summary(self) -> str: ...
    def to_dict(self) -> dict[str, Any]: ...


HEADROOM_RULE = "classifier-headroom"


def headroom_findings(headroom: Headroom) -> tuple[Finding, ...]:
    band = headroom.band
    if band is None:
        return ()
    caveat = f" ({headroom.caveat})" if headroom.caveat else ""
    return (
        Finding(
            HEADROOM_RULE,
            Severity.WARNING,
            f"conversations of {band[0]:,} to {band[1]:,} tokens (the primary's) fit the primary "
            "but not the classifier with its prompt and label; the reference router classifies "
            f"those on trimmed history (X-Route-Reason classified:trimmed-history){caveat}",
            # The fix every other rule accepts: the classifier is at its length already (and
            # often at its model's), so the primary gives up the band.
            f"accept it, or lower {headroom.primary} --max-model-len to {band[0]} so that "
            "every conversation it serves is classified whole",
            headroom.classifier,
        ),
    )


@dataclass(frozen=True)
class CheckResult:
    spec: StackSpec
    plan: VramPlan
    findings: tuple[Finding, ...]
    headroom: Headroom | None = None

    @property
    def ok(self) -> bool:
        return not any(f.severity is Severity.ERROR for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        a = self.plan.assumptions
        return {
            "compose": str(self.spec.path),
            "compose_sha256": self.spec.sha256,
            "start_order": list(self.spec.start_order),
            "gpu": {
                "total_bytes": a.total_bytes,
                "total_source": a.total_source,
                "cuda_context_bytes_per_engine": a.cuda_context_bytes,
                "utilization_sum": self.plan.utilization_sum,
                "budgets_bytes": self.plan.budgets_bytes,
                "headroom_bytes": self.plan.headroom_bytes,
            },
            "engines": {
                e.service: {
                    "model": e.model,
                    "arch_source": e.arch_source,
                    "gpu_memory_utilization": e.utilization,
                    "budget_bytes": e.budget_bytes,
                    "weight_bytes": e.weight_bytes,
                    "activation_reserve_bytes": e.activation_reserve_bytes,
                    "kv_pool_bytes": e.kv_pool_bytes,
                    "kv_cache_dtype": e.kv_cache_dtype,
                    "kv_bytes_per_token": e.kv_bytes_per_token,
                    "block_size": e.block_size,
                    "kv_capacity_tokens": e.kv_capacity_tokens,
                    "max_model_len": e.max_model_len,
                    "max_num_seqs": e.max_num_seqs,
                    "max_concurrency_at_max_model_len": round(
                        e.max_concurrency_at_max_model_len, 4
                    ),
                    "full_sequences": e.full_sequences,
                }
                for e in self.plan.engines
            },
            "classifier_headroom": self.headroom.to_dict() if self.headroom else None,
            "findings": [f.to_dict() for f in self.findings],
            "ok": self.ok,
        }


RESERVE_BY_SERVICE = "check.activation_reserve_by_service"


def reserves_by_service(settings: Settings, services: Sequence[str]) -> tuple[tuple[str, int], ...]:
    """Per-engine activation reserves from [check.activation_reserve_by_service], keyed by the
    compose service name (environment: HARNESS_CHECK_ACTIVATION_RESERVE_BY_SERVICE_<SERVICE>)."""
    unknown = sorted(set(settings.section(RESERVE_BY_SERVICE)) - set(services))
    if unknown:
        # A misspelt service would silently keep the default reserve.
        raise ConfigError(
            f"{settings.path or 'harness.toml'}: [{RESERVE_BY_SERVICE}] names "
            f"{', '.join(unknown)}, not an engine service of the compose file "
            f"({', '.join(services) or 'none'})"
        )
    found = []
    for service in services:
        raw = settings.get(f"{RESERVE_BY_SERVICE}.{service}", str, "")
        if raw:
            found.append((service, parse_size(raw, what=f"activation_reserve for {service}")))
    return tuple(found)


def assumptions_from(
    settings: Settings, *, nvml_total: int | None = None, services: Sequence[str] = ()
) -> MemoryAssumptions:
    """Memory assumptions: NVML's total when a GPU is visible, else --gpu-memory / harness.toml."""
    gpu_memory = settings.typed.check.gpu_memory
    if nvml_total is not None and "check.gpu_memory" not in settings.overrides:
        total, source = nvml_total, "NVML"
    else:
        total = parse_size(gpu_memory, what="gpu_memory")
        source = "--gpu-memory" if "check.gpu_memory" in settings.overrides else "harness.toml"
    return MemoryAssumptions(
        total_bytes=total,
        total_source=source,
        activation_reserve_bytes=parse_size(
            settings.typed.check.activation_reserve, what="activation_reserve"
        ),
        cuda_context_bytes=parse_size(settings.typed.check.cuda_context, what="cuda_context"),
        block_size=settings.typed.check.block_size,
        activation_reserve_by_service=reserves_by_service(settings, services),
    )


def run_check(
    compose: Path,
    settings: Settings,
    *,
    nvml_total: int | None = None,
    headroom: Callable[[StackSpec], Headroom] | None = None,
) -> CheckResult:
    spec = load_stack(compose)
    archs: dict[str, ModelArch] = {}
    for svc in spec.engines:
        assert svc.engine is not None
        try:
            archs[svc.name] = resolve_arch(svc.engine.model)
        except InputError as exc:
            raise InputError(f"{compose}: service {svc.name!r}: {exc}") from None
    assumptions = assumptions_from(
        settings, nvml_total=nvml_total, services=[s.name for s in spec.engines]
    )
    vram = plan([(s.name, s.engine, archs[s.name]) for s in spec.engines if s.engine], assumptions)
    ctx = PreflightContext(
        spec=spec,
        plan=vram,
        archs=archs,
        utilization_limit=settings.typed.check.utilization_limit,
    )
    findings = tuple(run_preflight(ctx))
    measured = headroom(spec) if headroom is not None else None
    if measured is not None:
        findings += headroom_findings(measured)
    return CheckResult(spec=spec, plan=vram, findings=findings, headroom=measured)
