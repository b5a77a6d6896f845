"""The load profiles and their user counts. No locust import here: this module is used by the
harness process, which gevent's monkey-patching must never reach."""

from __future__ import annotations

from harness.load.settings import LoadSettings

DEFAULT_DURATION_S = 60.0
PROFILES = ("steady", "saturate", "kv-pressure", "ramp", "soak")
# Profiles that also watch the router's and the harness's memory and open files.
WATCHED = ("soak",)


def users_for(profile: str, s: LoadSettings) -> int:
    """The profile's peak user count: max-num-seqs, or twice it for saturate, ramp and soak
    (saturate's load, held for long)."""
    if s.users is not None:
        return s.users
    return 2 * s.max_num_seqs if profile in ("saturate", "ramp", "soak") else s.max_num_seqs
