"""The stack as declared in the compose file: StackSpec, ServiceSpec, EngineArgs."""

from harness.compose.engine_args import EngineArgs, parse_engine_args
from harness.compose.parse import load_stack, parse_stack
from harness.compose.services import DeviceReservation, HealthCheck, PortMapping, ServiceSpec
from harness.compose.stack import StackSpec

__all__ = [
    "DeviceReservation",
    "EngineArgs",
    "HealthCheck",
    "PortMapping",
    "ServiceSpec",
    "StackSpec",
    "load_stack",
    "parse_engine_args",
    "parse_stack",
]
