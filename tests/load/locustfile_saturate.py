"""saturate: 2 x max-num-seqs users: the ones past max-num-seqs queue in the engines.

locust -f tests/load/locustfile_saturate.py --headless --host http://127.0.0.1:PORT
"""

from harness.load.shapes import ConstantShape
from harness.load.users import ChatUser

__all__ = ["ChatUser", "SaturateShape"]


class SaturateShape(ConstantShape):
    profile = "saturate"
