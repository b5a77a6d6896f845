"""Start order from `depends_on`: a topological order, ties broken by file order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from harness.errors import SpecError


def start_order(depends: Mapping[str, Sequence[str]], where: str) -> tuple[str, ...]:
    """Services in an order where each comes after everything it depends on.

    A dependency on a service that is not declared, or a cycle, is a SpecError that names them.
    """
    for name, deps in depends.items():
        for dep in deps:
            if dep not in depends:
                raise SpecError(
                    f"{where}: service {name!r} depends on {dep!r}, which is not defined"
                )
    done: list[str] = []
    placed: set[str] = set()
    remaining = list(depends)
    while remaining:
        ready = [n for n in remaining if all(d in placed for d in depends[n])]
        if not ready:
            raise SpecError(f"{where}: depends_on has a cycle: {_cycle(depends, remaining)}")
        first = ready[0]
        done.append(first)
        placed.add(first)
        remaining.remove(first)
    return tuple(done)


def _cycle(depends: Mapping[str, Sequence[str]], remaining: list[str]) -> str:
    path = [remaining[0]]
    while True:
        nxt = next(d for d in depends[path[-1]] if d in remaining)
        if nxt in path:
            loop = [*path[path.index(nxt) :], nxt]
            return " -> ".join(loop)
        path.append(nxt)
