"""steady: max-num-seqs users chatting through the ai-router.

locust -f tests/load/locustfile_steady.py --headless --host http://127.0.0.1:PORT
"""

from harness.load.shapes import ConstantShape
from harness.load.users import ChatUser

__all__ = ["ChatUser", "SteadyShape"]


class SteadyShape(ConstantShape):
    profile = "steady"
