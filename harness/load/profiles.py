"""The load profiles and their user counts. No locust import here: this module is used by the
harness process, which gevent's monkey-patching must never reach."""

from __future__ import annotations

from harness.load.settings import LoadSettings

DEFAULT_DURATION_S = 60.0
PROFILES = ("steady", "saturate", "kv-pressure", "ramp", "soak", "conversation")
# Profiles whose users are ChatUsers: labelled prompts of both routes, judged on routing too.
CHAT_PROFILES = ("steady", "saturate", "ramp", "soak")
# Profiles whose users hold multi-turn conversations (harness.load.conversations).
CONVERSATION_PROFILES = ("conversation",)
# Profiles that also watch the router's and the harness's memory and open files.
WATCHED = ("soak",)


def users_for(profile: str, s: LoadSettings) -> int:
    """The profile's peak user count: max-num-seqs (steady, conversation), or twice it for
    saturate, ramp and soak (saturate's load, held for long). kv-pressure's count comes from
    the runner, which knows the primary's KV pool (harness.load.kvmodel.users_for_kv_pressure).
    """
    if s.users is not None:
        return s.users
    return 2 * s.max_num_seqs if profile in ("saturate", "ramp", "soak") else s.max_num_seqs


def min_requests_for(profile: str, max_num_seqs: int) -> int:
    """Requests a profile must send before its shape may end. kv-pressure's long requests can
    outlast the configured duration, and with one request per user its queueing would only
    show in locust's drain; two rounds of every slot keep it inside the profile's window."""
    return 2 * max_num_seqs if profile == "kv-pressure" else 0
