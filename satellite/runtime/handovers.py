"""What other threads hand over to the control thread, through `Controller.submit()`.

Each item is a plain value: paho's network thread, gpiozero's callback thread, the pipeline
thread and the arbiter's timer never call into the controller beyond putting one in its queue.
"""

from __future__ import annotations

from dataclasses import dataclass

from satellite.core.session import Event


@dataclass(frozen=True)
class MqttMessage:
    """A message from a subscribed topic (submitted by paho's thread).

    `retained`: the broker sent it because we subscribed (a stored message), not live.
    """

    topic: str
    payload: bytes
    retained: bool = False


@dataclass(frozen=True)
class OversizedMessage:
    """A message over the size limit, dropped on arrival: only its topic and size travel on."""

    topic: str
    size: int


@dataclass(frozen=True)
class ConnectionChanged:
    """The broker connection came up or went down (submitted by paho's thread)."""

    connected: bool


@dataclass(frozen=True)
class ButtonPressed:
    """The mute button was pressed (submitted by gpiozero's thread)."""


@dataclass(frozen=True)
class AccessoryFault:
    """The LEDs or button failed to open (`reason`) or are open now (None)."""

    reason: str | None


@dataclass(frozen=True)
class SessionEvent:
    """Something the session machine did (submitted by the pipeline thread)."""

    event: Event


@dataclass(frozen=True)
class ArbitrationDecided:
    """This satellite's claim of a wake word won (its session opened) or lost."""

    won: bool


class Tick:
    """Nothing arrived for a while: apply LED timeouts, publish a status held back."""


TICK = Tick()
