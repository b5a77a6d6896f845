"""Reference ai-router: an OpenAI-compatible front that routes each chat to vLLM or xAI search."""

__version__ = "0.1.0"
