"""soak: 2 x max-num-seqs users, held for long (600 s from harness.toml).

locust -f tests/load/locustfile_soak.py --headless --host http://127.0.0.1:PORT
"""

from harness.load.shapes import ConstantShape
from harness.load.users import ChatUser

__all__ = ["ChatUser", "SoakShape"]


class SoakShape(ConstantShape):
    profile = "soak"
