"""ramp: from 1 to 3 x max-num-seqs users over the duration.

locust -f tests/load/locustfile_ramp.py --headless --host http://127.0.0.1:PORT
"""

from harness.load.shapes import RampShape
from harness.load.users import ChatUser

__all__ = ["ChatUser", "RampShape"]
