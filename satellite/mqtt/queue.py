"""The link's offline queue: QoS >= 1 publishes held in order while the broker is away."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from satellite.errors import MqttError

_MAX_PAYLOAD = 268_435_455  # the largest MQTT packet body
_MAX_TOPIC = 65_535  # bytes of UTF-8


@dataclass(frozen=True, slots=True)
class Held:
    """A QoS >= 1 publish waiting in the offline queue."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


class OfflineQueue:
    """What waits for the next connection, oldest first, and what an outage cost.

    QoS >= 1 messages wait, up to `capacity` (then the oldest is dropped); QoS 0 ones (interims,
    stale the moment a newer one exists) are dropped and counted. Not thread-safe: the link
    calls it with its lock held, the lock that also orders the hand-over to paho.
    """

    def __init__(self, capacity: int, log: logging.Logger) -> None:
        self._capacity = capacity
        self._log = log
        self._held: deque[Held] = deque()
        self.dropped_qos0 = 0
        self.dropped_offline = 0
        self._outage_drops = (0, 0)  # the two counters when the link went offline

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, message: Held) -> None:
        """Keep a QoS >= 1 message for the next connection; count a QoS 0 one as dropped."""
        if message.qos == 0:
            self.dropped_qos0 += 1
            return
        if len(self._held) >= self._capacity:
            self._held.popleft()
            self.dropped_offline += 1
            if self.dropped_offline == self._outage_drops[1] + 1:  # once per outage
                self._log.warning(
                    "MQTT offline queue full (%d messages): dropping the oldest", self._capacity
                )
        self._held.append(message)

    def take(self) -> list[Held]:
        """Remove and return everything held, oldest first."""
        held = list(self._held)
        self._held.clear()
        return held

    def adopt(self, held: Sequence[Held]) -> None:
        """Put `held` ahead of what waits here, dropping the oldest beyond the capacity."""
        merged = [*held, *self._held]
        excess = max(0, len(merged) - self._capacity)
        if excess:
            self.dropped_offline += excess
            self._log.warning("MQTT offline queue full: dropped the %d oldest", excess)
        self._held = deque(merged[excess:])

    def outage_began(self) -> None:
        """The link went offline: `outage_drops` counts from here."""
        self._outage_drops = (self.dropped_qos0, self.dropped_offline)

    def outage_drops(self) -> tuple[int, int]:
        """Interims dropped and oldest messages evicted since the outage began."""
        qos0, offline = self._outage_drops
        return self.dropped_qos0 - qos0, self.dropped_offline - offline


def check_publish(topic: str, payload: bytes, qos: int) -> None:
    """What paho would refuse, checked before a message is queued for later (MqttError)."""
    try:
        topic_bytes = len(topic.encode("utf-8"))
    except UnicodeEncodeError:  # lone surrogates
        topic_bytes = _MAX_TOPIC + 1
    problem = None
    if not topic or "+" in topic or "#" in topic:
        problem = "not a publish topic (empty or with a wildcard)"
    elif topic_bytes > _MAX_TOPIC:
        problem = f"topic not UTF-8 or longer than {_MAX_TOPIC} bytes"
    elif qos not in (0, 1, 2):
        problem = f"invalid QoS {qos}"
    elif len(payload) > _MAX_PAYLOAD:
        problem = f"payload of {len(payload)} bytes is over the MQTT limit"
    if problem is not None:
        raise MqttError(f"cannot publish to {topic!r}: {problem}")
