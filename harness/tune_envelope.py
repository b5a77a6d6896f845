"""`harness tune --judge capacity --envelope ENGINE`: the safe envelope (`harness envelope`)
measured before the change and after its verification, and the difference: per engine, the most
concurrent requests within the objectives at each prompt length, and each cell whose verdict or
measured bound changed. The difference is reported beside the capacity verdict; it does not
decide (the capacity does, harness.tune_capacity): a tuning change trades cells, and which trade
is worth it is the owner's call, not a rule's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Cell = Mapping[str, Any]


def cell_text(c: Cell | None) -> str:
    """'pass', 'pass slots', 'FAIL kv'; 'not measured' where the grid had no such cell."""
    if c is None:
        return "not measured"
    bound = str(c.get("measured_bound") or "none")
    return ("pass" if c["passed"] else "FAIL") + ("" if bound == "none" else f" {bound}")


def safe_concurrency(cells: Sequence[Cell]) -> dict[int, int]:
    """Per prompt length, the most concurrent requests that passed (0: none did)."""
    out: dict[int, int] = {}
    for c in cells:
        p = int(c["prompt_tokens"])
        out[p] = max(out.get(p, 0), int(c["concurrency"]) if c["passed"] else 0)
    return out


def _shape(engine: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("max_model_len", "max_num_seqs", "kv_tokens", "kv_source", "output_tokens")
    return {k: engine.get(k) for k in keys}


def engine_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """One engine's envelope after the change against before."""
    cells_b = {(int(c["prompt_tokens"]), int(c["concurrency"])): c for c in before["cells"]}
    cells_a = {(int(c["prompt_tokens"]), int(c["concurrency"])): c for c in after["cells"]}
    safe_b, safe_a = safe_concurrency(before["cells"]), safe_concurrency(after["cells"])
    changed = [
        {"prompt_tokens": p, "concurrency": k,
         "before": cell_text(cells_b.get((p, k))), "after": cell_text(cells_a.get((p, k)))}
        for p, k in sorted({*cells_b, *cells_a}, key=lambda pk: (-pk[0], pk[1]))
        if cell_text(cells_b.get((p, k))) != cell_text(cells_a.get((p, k)))
    ]  # fmt: skip
    safe = [
        {"prompt_tokens": p, "before": safe_b.get(p), "after": safe_a.get(p)}
        for p in sorted({*safe_b, *safe_a}, reverse=True)
    ]
    return {
        "engine": after["engine"], "before": _shape(before), "after": _shape(after),
        "safe": safe, "changed": changed, "cells": [len(cells_b), len(cells_a)],
    }  # fmt: skip


def envelope_diff(
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    runs: tuple[str | None, str | None] = (None, None),
    error: str | None = None,
) -> dict[str, Any]:
    """record.json's `tune.envelope`: the engines measured on both sides, and why not where an
    envelope is missing. `before`/`after` are `harness envelope` records' `envelope.result`."""
    doc: dict[str, Any] = {"runs": list(runs), "error": error, "engines": []}
    if before is None or after is None:
        doc["error"] = error or "no envelope " + ("before" if before is None else "after")
        return doc
    by_name = {e["engine"]: e for e in before["engines"]}
    doc["engines"] = [engine_diff(by_name[e["engine"]], e) for e in after["engines"]
                      if e["engine"] in by_name]  # fmt: skip
    return doc


def _side(v: int | None) -> str:
    return "-" if v is None else str(v)


def lines(doc: Mapping[str, Any]) -> list[str]:
    """The difference in a few console lines (also report.md's list)."""
    if doc.get("error"):
        return [f"envelope: not compared ({doc['error']})"]
    out = []
    for e in doc["engines"]:
        b, a = e["before"], e["after"]
        shape = [f"max-num-seqs {b['max_num_seqs']} -> {a['max_num_seqs']}"] if (
            b["max_num_seqs"] != a["max_num_seqs"]) else []  # fmt: skip
        if b["kv_tokens"] != a["kv_tokens"]:
            shape.append(f"KV pool {b['kv_tokens']:,} -> {a['kv_tokens']:,} tokens")
        safe = ", ".join(
            f"{s['prompt_tokens']:,}: {_side(s['before'])} -> {_side(s['after'])}"
            for s in e["safe"]
        )
        out.append(
            f"envelope {e['engine']}{' (' + ', '.join(shape) + ')' if shape else ''}: most "
            f"concurrent requests within the objectives by prompt length, before -> after: {safe}"
        )
        moved = "; ".join(
            f"{c['prompt_tokens']:,}x{c['concurrency']} {c['before']} -> {c['after']}"
            for c in e["changed"]
        )
        out.append(f"  {len(e['changed'])} cell(s) changed" + (f": {moved}" if moved else ""))
    return out
