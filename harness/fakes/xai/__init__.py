"""The fake xAI Responses API: ``python -m harness.fakes.xai`` (see server.py)."""
