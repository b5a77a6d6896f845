"""Acceptance and load-test harness for a self-hosted vLLM routing stack."""

__version__ = "0.1.0"
