"""Which compose file a run used, by its sha256, and whether two runs used the same one.

A record keeps the hash twice: `stack.compose_sha256` (the file the stack was brought up from)
and `preflight.compose_sha256` (the file `harness check` read at the start of the run). Records
written before either was kept have neither: their compose file cannot be compared."""

from __future__ import annotations

from typing import Any

# Enough hex digits to tell two files apart on a terminal line, as report.md prints them.
SHOWN_DIGITS = 12


def compose_hash(doc: dict[str, Any]) -> str | None:
    """The sha256 of the compose file the run used; None for a record that has none."""
    for section in ("stack", "preflight"):
        digest = (doc.get(section) or {}).get("compose_sha256")
        if isinstance(digest, str) and digest:
            return digest
    return None


def shown(digest: str) -> str:
    """'1a2b3c4d5e6f…': a hash as people read it."""
    return digest[:SHOWN_DIGITS] + "…" if len(digest) > SHOWN_DIGITS else digest


def compose_difference(base: dict[str, Any], cur: dict[str, Any]) -> str:
    """'compose hash 1a2b3c4d5e6f… vs 3c4d5e6f7a8b…' (baseline first) when the runs used other
    compose files; "" when they used the same one, or when a record has no hash."""
    b, c = compose_hash(base), compose_hash(cur)
    if b is None or c is None or b == c:
        return ""
    return f"compose hash {shown(b)} vs {shown(c)}"


def missing_note(base: dict[str, Any], cur: dict[str, Any]) -> str:
    """Why the compose files could not be compared: which record has no hash; "" when both
    have one."""
    records = (("baseline's", base), ("current run's", cur))
    lacking = [name for name, doc in records if not compose_hash(doc)]
    if not lacking:
        return ""
    whose = " and the ".join(lacking)
    return f"the {whose} record has no compose hash (an older record): compose files not compared"
