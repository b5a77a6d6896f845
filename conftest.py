"""Root conftest. The harness's pytest plugin is loaded through its `pytest11` entry point
(harness/pytest_plugin.py); nothing else belongs here."""

collect_ignore_glob = ["reports/*", ".venv/*"]
