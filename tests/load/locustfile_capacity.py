"""capacity: one probe of `harness capacity`, open-loop Poisson arrivals at HARNESS_LOAD_RATE_PER_S
for HARNESS_LOAD_DURATION_S, each request the one HARNESS_LOAD_PROFILE's users send (steady and
saturate: chats through the ai-router, saturate's answers run to max_tokens; kv-pressure: long
prompts), with a pool of HARNESS_LOAD_USERS users to take the arrivals.

HARNESS_LOAD_RATE_PER_S=2 HARNESS_LOAD_DURATION_S=20 HARNESS_LOAD_USERS=80 \\
    locust -f tests/load/locustfile_capacity.py --headless --host http://127.0.0.1:PORT
"""

# Modules, not classes: locust runs every user and shape class a locustfile's namespace holds.
from harness.load import open_loop, users

__all__ = ["CapacityShape", "CapacityUser"]

_BASES = {"saturate": users.ChatUser, "kv-pressure": users.LongContextUser}


class CapacityUser(open_loop.OpenLoop, _BASES.get(users.SETTINGS.profile, users.ChatUser)):  # type: ignore[misc]
    full_answers = users.SETTINGS.profile == "saturate"


class CapacityShape(open_loop.OpenLoopShape):
    profile = "capacity"
