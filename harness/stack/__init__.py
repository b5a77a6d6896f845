"""Bringing a stack up and down: the Backend protocol and its process, attach and container
implementations, health gating, and log capture."""
