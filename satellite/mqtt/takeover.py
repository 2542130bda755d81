"""Telling a second connection with our MQTT client id from ordinary disconnects, and backing off.

The broker keeps one connection per client id: when a second one connects, it closes the first,
and the first reconnects and closes the second, once a second, forever. Over MQTT 3.1.1 the
closed one is told nothing (MQTT 5's "session taken over" reason code does not exist there), and
paho reports a plain lost connection. Two signs are reliable with 3.1.1 and mosquitto:

- **Another satellite's status on our own status topic.** Every status and the will this process
  publishes carry its `instance_id`. After a reconnect, the retained status the broker hands over
  (before our new birth) can only be ours: our last status, or our will if the broker closed us.
  Another `instance_id` there means another process published on our topic while we were away:
  a second satellite with our satellite_id, whose will the broker published when we took the
  client id back. The first connection of a process does not count: there it is its predecessor.
- **A streak of short connections, each ended with our will.** Anyone else using our client id (a
  tool, no status) gets our connection closed again and again within a second or two of the
  broker accepting it, and the broker, still running, publishes our will each time: the retained
  status at our next connect is our own will. A broker restart leaves no retained status
  (without persistence) or fails the attempts made while it is down; only a persistent broker
  restarted every few seconds, and back each time before we retry, would look the same.

On either sign the link (through a TakeoverWatch) logs one ERROR naming the client id and the fix,
and waits 30 s before
reconnecting, doubling up to 10 min, instead of its normal backoff, so two such satellites swap
the connection a few times an hour instead of every second. A connection that lasts 15 min ends
the episode.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from enum import Enum

from pydantic import ValidationError

from satellite.core.backoff import Backoff
from satellite.mqtt.contracts import RetainedStatus


class Origin(Enum):
    """Whose status a retained message on our status topic is."""

    OURS = "ours"
    OUR_WILL = "our will"  # ours, online false: the broker closed our connection and ran on
    OTHER = "another process's"
    UNKNOWN = "not a status"


@dataclass(frozen=True)
class OwnStatus:
    """How a link recognises this process's status, and what to tell the user about another."""

    instance_id: str
    advice: str  # the fix, e.g. "give each satellite its own satellite_id in …"

    def origin(self, payload: bytes) -> Origin:
        """Whether `payload` is a status of this process, of another one, or no status at all."""
        try:
            status = RetainedStatus.model_validate_json(payload)
        except ValidationError:
            return Origin.UNKNOWN
        if status.instance_id != self.instance_id:
            return Origin.OTHER
        return Origin.OURS if status.online else Origin.OUR_WILL


@dataclass(frozen=True)
class LongWait:
    """A long reconnect wait, and the sign to report (ERROR) when it starts an episode."""

    wait_s: float
    report: str | None


class TakeoverGuard:
    """Watches one link's connections for another connection with the same client id.

    Pure bookkeeping, fed by the link from paho's thread with monotonic times.
    """

    def __init__(
        self,
        *,
        rng: random.Random,
        kick_s: float = 3.0,
        streak: int = 5,
        first_wait_s: float = 30.0,
        max_wait_s: float = 600.0,
        calm_s: float = 900.0,
    ) -> None:
        self._kick_s = kick_s
        self._streak = streak
        # Its failures are the long waits of this episode (0: no episode).
        self._waits = Backoff(first_wait_s, max_wait_s, jitter=0.2, rng=rng)
        self._calm_s = calm_s
        self._connections = 0
        self._accepted_at = 0.0
        self._other = False  # another process's status was retained when this connection began
        self._unconfirmed = False  # the last connection was short; our will would confirm a kick
        self._short = 0  # kicks in a row: short connections whose end published our will
        self._reported = False

    @property
    def waits(self) -> int:
        """Long waits so far in the current episode."""
        return self._waits.failures

    def accepted(self, now: float) -> None:
        """The broker accepted a connection (CONNACK)."""
        self._connections += 1
        self._accepted_at, self._other = now, False

    def retained(self, origin: Origin) -> str | None:
        """The retained status handed over on connecting; a sign to report (ERROR), if new."""
        if origin is Origin.OUR_WILL and self._unconfirmed:
            self._unconfirmed, self._short = False, self._short + 1
        if origin is not Origin.OTHER or self._connections < 2:
            return None
        self._other = True
        return self._report("another satellite's status was on this satellite's status topic")

    def failed(self) -> None:
        """A connection attempt failed: the broker was away, so no streak runs through it."""
        self._short, self._unconfirmed = 0, False

    def lost(self, now: float) -> LongWait | None:
        """The broker closed the connection (we did not): a long wait, or None for the normal."""
        lasted = now - self._accepted_at
        if lasted >= self._calm_s:
            self._short, self._unconfirmed, self._reported = 0, False, False
            self._waits.reset()
            return None
        if self._unconfirmed or lasted >= self._kick_s:
            self._short = 0  # the last short one's will never came back, or this one lasted
        self._unconfirmed = lasted < self._kick_s
        report = None
        if self._short >= self._streak:
            report = self._report(
                f"the broker closed {self._short} connections in a row within {self._kick_s:g} s"
                " of accepting them, and published this satellite's will each time"
            )
        elif not self._other:
            return None
        return LongWait(self._waits.next(), report)

    def _report(self, sign: str) -> str | None:
        if self._reported:
            return None
        self._reported = True
        return sign


class TakeoverWatch:
    """The link's side of a TakeoverGuard: feeds it, and logs what it finds (one ERROR)."""

    def __init__(
        self,
        *,
        client_id: str,
        own_status: OwnStatus | None,
        rng: random.Random,
        log: logging.Logger,
    ) -> None:
        self._client_id = client_id
        self._own_status = own_status
        self._guard = TakeoverGuard(rng=rng)
        self._log = log

    def accepted(self) -> None:
        """The broker accepted a connection (CONNACK)."""
        self._guard.accepted(time.monotonic())

    def failed(self) -> None:
        """A connection attempt failed."""
        self._guard.failed()

    def retained(self, topic: str, payload: bytes) -> None:
        """The retained copy of our status topic, handed over on subscribing."""
        if self._own_status is None or not payload:
            return
        origin = self._own_status.origin(payload)
        if origin is not Origin.OURS:
            self._log.debug("retained status on %s is %s", topic, origin.value)
        sign = self._guard.retained(origin)
        if sign is not None:
            self._report(sign)

    def lost(self) -> float | None:
        """The broker closed our connection: seconds to wait before reconnecting, or None for
        the link's normal backoff."""
        long_wait = self._guard.lost(time.monotonic())
        if long_wait is None:
            return None
        if long_wait.report is not None:
            self._report(long_wait.report)
        self._log.warning(
            "MQTT client id %r is in use by another connection: reconnecting in %.0f s, not at "
            "once, so as not to take it back every second (long wait %d)",
            self._client_id,
            long_wait.wait_s,
            self._guard.waits,
        )
        return long_wait.wait_s

    def _report(self, sign: str) -> None:
        advice = self._own_status.advice if self._own_status else "give each client its own id"
        self._log.error(
            "MQTT client id %r is in use by another connection (%s), so the broker keeps "
            "closing one for the other: %s",
            self._client_id,
            sign,
            advice,
        )
