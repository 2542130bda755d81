"""The checks of `satellite check` that need a device or a broker, and the Result they return."""

from satellite.commands.checks.broker import BROKER_TIMEOUT_S, check_broker
from satellite.commands.checks.microphone import (
    LISTEN_S,
    Level,
    check_microphone,
    level_bar,
    measure_level,
    probe_microphone,
)
from satellite.commands.checks.result import Result, failed, neutral, passed

__all__ = [
    "BROKER_TIMEOUT_S",
    "LISTEN_S",
    "Level",
    "Result",
    "check_broker",
    "check_microphone",
    "failed",
    "level_bar",
    "measure_level",
    "neutral",
    "passed",
    "probe_microphone",
]
