"""Text, Markdown and JSON renderings of a CheckResult."""

from __future__ import annotations

from harness.units import gib
from harness.vram.check import CheckResult
from harness.vram.rules import Severity

COLUMNS = (
    "engine",
    "model",
    "util",
    "budget",
    "weights",
    "KV pool",
    "KV/token",
    "capacity (tokens)",
    "at max-model-len",
    "max-num-seqs",
)


def _rows(result: CheckResult) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for e in result.plan.engines:
        rows.append(
            (
                e.service,
                e.model,
                f"{e.utilization:g}",
                gib(e.budget_bytes),
                gib(e.weight_bytes),
                gib(e.kv_pool_bytes),
                f"{e.kv_bytes_per_token:,} B",
                f"{e.kv_capacity_tokens:,}",
                f"{e.max_concurrency_at_max_model_len:.2f}x of {e.max_model_len:,}",
                str(e.max_num_seqs),
            )
        )
    return rows


def card_line(result: CheckResult) -> str:
    p = result.plan
    a = p.assumptions
    return (
        f"Card: budgets {gib(p.budgets_bytes)} + CUDA contexts {gib(p.contexts_bytes)} "
        f"({len(p.engines)} x {gib(a.cuda_context_bytes)}) of {gib(a.total_bytes)} "
        f"({a.total_source}); headroom {gib(p.headroom_bytes)}; "
        f"utilization sum {p.utilization_sum:g}"
    )


def render_text(result: CheckResult) -> str:
    rows = [COLUMNS, *_rows(result)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = [
        f"Stack: {result.spec.path} (sha256 {result.spec.sha256[:12]})",
        "Start order: " + " -> ".join(result.spec.start_order),
        "",
    ]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    lines += ["", card_line(result), ""]
    if result.headroom is not None:
        lines += [result.headroom.summary(), ""]
    if not result.findings:
        lines.append("Findings: none.")
    for f in result.findings:
        where = f" [{f.service}]" if f.service else ""
        lines.append(f"{f.severity.upper():7} {f.rule}{where}: {f.message}")
        lines.append(f"        fix: {f.fix}")
    errors = sum(f.severity is Severity.ERROR for f in result.findings)
    warnings = sum(f.severity is Severity.WARNING for f in result.findings)
    lines.append("")
    lines.append(
        f"FAIL: {errors} error(s), {warnings} warning(s)"
        if errors
        else f"OK: no errors, {warnings} warning(s)"
    )
    return "\n".join(lines)


def render_markdown_table(result: CheckResult) -> str:
    """The budget table as Markdown; the infra docs embed exactly this text."""
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in _rows(result)]
    lines += ["", card_line(result), "", render_worked_example(result)]
    return "\n".join(lines)


def render_worked_example(result: CheckResult) -> str:
    """The arithmetic behind each row, step by step, as the infra docs show it."""
    a = result.plan.assumptions
    lines = []
    for e in result.plan.engines:
        tp = (
            ""
            if e.kv_bytes_per_token
            == (2 * e.num_layers * e.num_kv_heads * e.head_dim * e.kv_dtype_bytes)
            else " (split over tensor-parallel ranks)"
        )
        lines += [
            f"**{e.service}** ({e.model}, KV cache {e.kv_cache_dtype}):",
            "",
            f"- budget = {e.utilization:g} x {gib(a.total_bytes)} = {gib(e.budget_bytes)}",
            f"- weights = {gib(e.weight_bytes)} ({e.arch_source})",
            f"- KV pool = {gib(e.budget_bytes)} - {gib(e.weight_bytes)} - "
            f"{gib(e.activation_reserve_bytes)} reserve = {gib(e.kv_pool_bytes)}",
            f"- KV bytes per token = 2 x {e.num_layers} layers x {e.num_kv_heads} KV heads x "
            f"{e.head_dim} head_dim x {e.kv_dtype_bytes} byte(s) = {e.kv_bytes_per_token:,} B{tp}",
            f"- capacity = floor(KV pool / ({e.kv_bytes_per_token:,} B x {e.block_size}-token "
            f"blocks)) x {e.block_size} = {e.kv_capacity_tokens:,} tokens",
            f"- concurrency at max-model-len = {e.kv_capacity_tokens:,} / {e.max_model_len:,} = "
            f"{e.max_concurrency_at_max_model_len:.2f}x, against --max-num-seqs {e.max_num_seqs}",
            "",
        ]
    p = result.plan
    lines.append(
        f"**Card**: {gib(p.budgets_bytes)} of budgets + {len(p.engines)} x "
        f"{gib(a.cuda_context_bytes)} CUDA contexts = {gib(p.budgets_bytes + p.contexts_bytes)} "
        f"of {gib(a.total_bytes)}, headroom {gib(p.headroom_bytes)}."
    )
    return "\n".join(lines)
