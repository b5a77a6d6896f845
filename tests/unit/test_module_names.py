"""Every test module's file name is unique across the test folders: pytest imports them by
basename (rootdir mode, no packages), so a second tests/*/test_x.py stops the whole session at
collection."""

from __future__ import annotations

import collections
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_no_two_test_modules_share_a_file_name() -> None:
    paths = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    names: dict[str, list[str]] = collections.defaultdict(list)
    for folder in paths["testpaths"]:
        for path in (ROOT / folder).rglob("*.py"):
            if path.name.startswith("test_") or path.name == "conftest.py":
                names[path.name].append(str(path.relative_to(ROOT)))
    names.pop("conftest.py", None)
    shared = {name: where for name, where in names.items() if len(where) > 1}
    assert not shared, f"test modules sharing a file name: {shared}"
