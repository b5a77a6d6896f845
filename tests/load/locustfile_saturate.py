"""saturate: 2 x max-num-seqs users whose local answers run to max_tokens (4 x [load]
max_tokens): the primary is the stack's bottleneck, and the requests past its max-num-seqs
slots queue there ([slo.saturate] min_waiting).

locust -f tests/load/locustfile_saturate.py --headless --host http://127.0.0.1:PORT
"""

from harness.load import users
from harness.load.shapes import ConstantShape

__all__ = ["SaturateShape", "SaturateUser"]


class SaturateUser(users.ChatUser):
    """A ChatUser whose local answers never stop at EOS: on the twin, whose tiny primary ends
    most answers after about 40 tokens, the classifier would otherwise pass requests on more
    slowly than the primary frees its slots, and nothing would queue there."""

    full_answers = True


class SaturateShape(ConstantShape):
    profile = "saturate"
