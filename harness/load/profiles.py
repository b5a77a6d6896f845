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


# Users per max-num-seqs slot. About a third of the chat prompts route to search and never reach
# the primary. ramp peaks at 3x; saturate and ramp assert that requests waited at the primary
# ([slo.saturate] and [slo.ramp] min_waiting).
_PER_SLOT = {"saturate": 2, "ramp": 3, "soak": 2}
# Output tokens per request, as a multiple of [load] max_tokens. saturate makes the primary the
# stack's bottleneck, as it is on the GPU box (a 32B model behind a 3B classifier): on the twin
# the classifier's prefills are the slow part, and with 64-token answers the primary freed its
# slots faster than the classifier passed requests on (waiting max 0 in three 20 s runs with 6
# and 12 users, running max 3).
_OUTPUT_SCALE = {"saturate": 4}


def max_tokens_for(profile: str, max_tokens: int) -> int:
    """The output budget of each request of `profile`, from [load] max_tokens."""
    return max_tokens * _OUTPUT_SCALE.get(profile, 1)


def users_for(profile: str, s: LoadSettings) -> int:
    """The profile's peak user count: max-num-seqs (steady, conversation), 2x it for saturate
    and soak (held for long), 3x at ramp's peak. kv-pressure's count comes from the
    runner, which knows the primary's KV pool (harness.load.kvmodel.users_for_kv_pressure).
    """
    if s.users is not None:
        return s.users
    return _PER_SLOT.get(profile, 1) * s.max_num_seqs


def min_requests_for(profile: str, max_num_seqs: int) -> int:
    """Requests a profile must send before its shape may end. kv-pressure's long requests can
    outlast the configured duration, and with one request per user its queueing would only
    show in locust's drain; two rounds of every slot keep it inside the profile's window."""
    return 2 * max_num_seqs if profile == "kv-pressure" else 0
