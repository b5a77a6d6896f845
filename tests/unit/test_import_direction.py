"""Imports go one way, down the layers of docs/architecture.md: a module may import from its own
package and from the layers below it, never from a layer above or a package beside it.

Imports under `if TYPE_CHECKING:` count too: an annotation that needs an upper layer is a sign
the value belongs lower down.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "harness"

# Top to bottom. A top-level module (harness/x.py) is its own package `x`.
LAYERS: list[tuple[str, ...]] = [
    ("cli", "pytest_plugin"),
    ("pytest_stack",),
    ("pytest_require",),
    ("tune_capacity",),
    ("tune",),
    ("report",),
    ("tune_envelope",),
    ("load",),
    ("stack",),
    ("twin", "fakes"),
    ("routing", "vram"),
    ("compose", "telemetry"),
    ("config",),
    ("config_schema", "units", "progress", "locks"),
    ("errors",),
]


def rank_of(package: str) -> int:
    for i, layer in enumerate(LAYERS):
        if package in layer:
            return i
    raise AssertionError(f"harness.{package} is in no layer: add it to LAYERS and the docs")


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def is_module(name: str) -> bool:
    return (ROOT / f"{name}.py").is_file() or (ROOT / name).is_dir()


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every `harness.*` module that `path` imports."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if (
                node.module == "harness"
            ):  # `from harness import module`, not a name like __version__
                out += [(node.lineno, f"harness.{a.name}") for a in node.names if is_module(a.name)]
            elif node.module.startswith("harness."):
                out.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("harness.")]
    return out


def violations(modules: dict[str, list[tuple[int, str]]]) -> list[str]:
    """`modules`: importer (dotted) -> its imports. One line per upward or sideways import."""
    out = []
    for importer, imported in sorted(modules.items()):
        src = package_of(importer)
        if not src:
            continue  # harness/__init__.py
        for line, target in imported:
            dst = package_of(target)
            if not dst or dst == src:
                continue
            if rank_of(dst) <= rank_of(src):
                out.append(f"{importer}:{line} imports {target} ({dst} is not below {src})")
    return out


def harness_modules() -> dict[str, list[tuple[int, str]]]:
    out = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = imports_of(path)
    return out


def test_every_import_points_down_the_layers() -> None:
    found = violations(harness_modules())
    assert not found, "upward or sideways imports:\n" + "\n".join(found)


def test_every_package_has_a_layer() -> None:
    for module in harness_modules():
        if package_of(module):
            rank_of(package_of(module))


def test_an_upward_import_is_caught() -> None:
    graph = {
        "harness.vram.usage": [(3, "harness.stack.base")],
        "harness.stack.factory": [(5, "harness.vram.check")],
        "harness.twin.build": [(7, "harness.fakes.xai.server")],
    }
    assert violations(graph) == [
        "harness.twin.build:7 imports harness.fakes.xai.server (fakes is not below twin)",
        "harness.vram.usage:3 imports harness.stack.base (stack is not below vram)",
    ]


# Circles inside a layer that are being broken now; each entry is an importer and one module it
# imports, and the test fails once the pair is gone so the entry cannot outlive the circle.
KNOWN_CIRCLES: set[tuple[str, str]] = set()


def module_graph() -> dict[str, list[tuple[int, str]]]:
    """importer -> (line, module) for every harness module, with `from harness.a import b`
    resolved to harness.a.b where b is a module, so a package's submodules are nodes."""
    out: dict[str, list[tuple[int, str]]] = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        found: list[tuple[int, str]] = []
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module != "harness" and not node.module.startswith("harness."):
                    continue
                base = ROOT.parent.joinpath(*node.module.split("."))
                for a in node.names:
                    sub = base / a.name
                    if sub.is_dir() or sub.with_suffix(".py").is_file():
                        found.append((node.lineno, f"{node.module}.{a.name}"))
                    else:
                        found.append((node.lineno, node.module))
            elif isinstance(node, ast.Import):
                found += [
                    (node.lineno, a.name) for a in node.names if a.name.startswith("harness.")
                ]
        out[".".join(parts)] = found
    return out


def import_cycles(modules: dict[str, list[tuple[int, str]]]) -> list[list[str]]:
    """Every circle in the import graph of `modules` (each as the modules on one strongly
    connected component, sorted), counting only imports of modules that are in `modules` and
    leaving out the pairs in KNOWN_CIRCLES. Submodules' imports of their own package's
    `__init__` are the package's own business and count like any other."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for importer, imported in modules.items():
        for _, target in imported:
            # `from harness.x import y` where y is a module imports harness.x.y.
            dst = target if target in modules else None
            if dst and dst != importer and (importer, dst) not in KNOWN_CIRCLES:
                graph[importer].add(dst)
    # Tarjan's strongly connected components, iteratively (no recursion limit on deep graphs).
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [(root, sorted(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, todo = work[-1]
            if todo:
                nxt = todo.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph[nxt])))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return sorted(out)


def test_no_import_circles() -> None:
    cycles = import_cycles(module_graph())
    assert not cycles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_each_known_circle_is_still_there() -> None:
    modules = module_graph()
    gone = [
        f"{a} -> {b}"
        for a, b in sorted(KNOWN_CIRCLES)
        if b not in {target for _, target in modules.get(a, [])}
    ]
    assert not gone, "drop these from KNOWN_CIRCLES, the import is gone:\n" + "\n".join(gone)


def test_a_circle_is_caught() -> None:
    graph = {
        "harness.stack.base": [(11, "harness.stack.kv_line")],
        "harness.stack.kv_line": [(26, "harness.stack.base")],
        "harness.stack.factory": [(96, "harness.stack.containers.factory")],
        "harness.stack.containers.factory": [(66, "harness.stack.factory")],
        "harness.stack.logs": [(3, "harness.errors")],
        "harness.errors": [],
    }
    assert import_cycles(graph) == [
        ["harness.stack.base", "harness.stack.kv_line"],
        ["harness.stack.containers.factory", "harness.stack.factory"],
    ]
    assert import_cycles({"a": [(1, "b")], "b": [(1, "c")], "c": [(1, "a")], "d": []}) == [
        ["a", "b", "c"]
    ]
