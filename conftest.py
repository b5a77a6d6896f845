"""Root conftest. The harness's pytest plugin is loaded through its `pytest11` entry point
(harness/pytest_plugin.py); the plugin's own tests use pytest's `pytester`."""

collect_ignore_glob = ["reports/*", ".venv/*"]
pytest_plugins = ["pytester"]
