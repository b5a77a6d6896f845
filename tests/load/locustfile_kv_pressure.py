"""kv-pressure: max-num-seqs long-context users; prompts are HARNESS_LOAD_CONTEXT_FRACTION of
max-model-len and differ from the first token, so the KV cache fills.

    locust -f tests/load/locustfile_kv_pressure.py --headless --host http://127.0.0.1:PORT
"""

from harness.load.shapes import ConstantShape
from harness.load.users import LongContextUser

__all__ = ["KvPressureShape", "LongContextUser"]


class KvPressureShape(ConstantShape):
    profile = "kv-pressure"
