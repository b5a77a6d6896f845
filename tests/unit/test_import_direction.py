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
    ("pytest_require",),
    ("tune",),
    ("report",),
    ("load",),
    ("stack",),
    ("twin", "fakes"),
    ("routing", "vram"),
    ("spec", "telemetry"),
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
