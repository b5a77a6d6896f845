"""replay: the ai-router's own session log, sent again at its logged pace (compressed by the
speed), each request due at its time (harness.load.replay builds the plan, PLAN beside the
records file; harness.load.replay_user sends it).

    locust -f tests/load/locustfile_replay.py --headless --host http://127.0.0.1:PORT

Set HARNESS_LOAD_RECORDS beside a replay-plan.json (`harness load replay` writes both) and
HARNESS_LOAD_USERS to the plan's users.
"""

# The module, not its classes: locust runs every shape class a locustfile's namespace holds.
from harness.load import shapes
from harness.load.replay_user import ReplayUser

__all__ = ["ReplayShape", "ReplayUser"]


class ReplayShape(shapes.ConstantShape):
    """The plan's users until every request of the plan has been answered (or has failed),
    for at most shapes.MAX_OVERRUN_S past the last one's due time."""

    profile = "replay"

    def done(self, t: float) -> bool:
        total = ReplayUser.total()
        if total and ReplayUser.finished >= total:
            return True
        return t >= (self.settings.duration_s or 0.0) + shapes.MAX_OVERRUN_S
