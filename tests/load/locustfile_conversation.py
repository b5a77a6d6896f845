"""conversation: max-num-seqs users holding multi-turn conversations through the ai-router, each
turn with the whole history and a think time before it; one conversation in five grows into the
classifier's headroom band (harness.load.conversations).

    locust -f tests/load/locustfile_conversation.py --headless --host http://127.0.0.1:PORT

Set HARNESS_LOAD_CLASSIFIER_URL, HARNESS_LOAD_CLASSIFIER_MODEL and HARNESS_LOAD_MAX_MODEL_LEN
(the primary's) too: the users measure the band with the classifier's /tokenize.
"""

from locust.runners import MasterRunner

# The module, not its classes: locust runs every shape class a locustfile's namespace holds.
from harness.load import shapes
from harness.load.users import ConversationUser

__all__ = ["ConversationShape", "ConversationUser"]


class ConversationShape(shapes.ConstantShape):
    """Runs its duration, then on until the first long conversation's last turn has been
    answered (for at most shapes.MAX_OVERRUN_S more), so that a short run still reaches the band."""

    profile = "conversation"

    def done(self, t: float) -> bool:
        if not super().done(t):
            return False
        if isinstance(self.runner, MasterRunner):
            return True  # the count is the workers'; a distributed run ends on its duration
        duration = self.settings.duration_s or 0.0
        return ConversationUser.band_turns_answered > 0 or t >= duration + shapes.MAX_OVERRUN_S
