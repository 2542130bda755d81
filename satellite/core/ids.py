"""Ids and timestamps that correlate and stamp messages: the core makes them, MQTT sends them."""

from __future__ import annotations

import time
import uuid
from typing import Literal

SatelliteState = Literal["idle", "wake_detected", "listening", "muted", "error"]
"""The states the satellite itself announces (the contract's satellite-originated states)."""


def new_id() -> str:
    """A fresh UUID4 string for message, session and utterance ids."""
    return str(uuid.uuid4())


def now_ms() -> int:
    """Unix epoch milliseconds, the contract's `timestamp`."""
    return time.time_ns() // 1_000_000
