"""The satellite's status payload (retained on its status topic) and the last will that ends it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from satellite.config import Settings
from satellite.core.ids import SatelliteState, new_id, now_ms
from satellite.mqtt.contracts import StatusCounters, StatusMessage


class ShownState(Protocol):
    """What the room is shown now (satellite.runtime.control.RoomView)."""

    @property
    def state(self) -> SatelliteState: ...

    @property
    def muted(self) -> bool: ...

    @property
    def led(self) -> str: ...

    @property
    def fault(self) -> str | None: ...

    @property
    def accessory_fault(self) -> str | None: ...


class HealthCounts(Protocol):
    """The control side's health figures (satellite.runtime.control.Counters)."""

    @property
    def invalid_messages(self) -> int: ...

    @property
    def wake_detections(self) -> int: ...

    @property
    def sessions(self) -> int: ...

    @property
    def retained_commands(self) -> int: ...

    @property
    def arbitration_wins(self) -> int: ...

    @property
    def arbitration_losses(self) -> int: ...


@dataclass(frozen=True)
class Instance:
    """This process on the broker: the same in every status and in the will, across reloads."""

    version: str  # the satellite package's
    instance_id: str = field(default_factory=new_id)
    since_ms: int = field(default_factory=now_ms)


@dataclass(frozen=True)
class Health:
    """The figures of a status that are neither the room's state nor the uptime."""

    counts: HealthCounts
    dropped_frames: int  # capture chunks dropped (queue full)
    state_error: str | None = None  # the mute file's trouble, if any


def will_payload(settings: Settings, instance: Instance) -> bytes:
    """`online: false` for the broker to publish when the connection is lost.

    The broker publishes it at a moment nobody knows now: no timestamp, uptime or state.
    """
    return StatusMessage(
        online=False,
        room_id=settings.room_id,
        satellite_id=settings.satellite_id,
        instance_id=instance.instance_id,
        since=instance.since_ms,
        version=instance.version,
    ).to_json()


def status_payload(
    settings: Settings,
    instance: Instance,
    *,
    online: bool,
    uptime_s: float,
    shown: ShownState | None = None,
    health: Health | None = None,
) -> bytes:
    """A status stamped now: the birth and every change (`shown` and `health`), or the
    `online: false` of a clean stop (neither)."""
    return StatusMessage(
        online=online,
        room_id=settings.room_id,
        satellite_id=settings.satellite_id,
        instance_id=instance.instance_id,
        since=instance.since_ms,
        timestamp=now_ms(),
        version=instance.version,
        group=settings.arbitration.group if settings.arbitration.enabled else None,
        state=None if shown is None else shown.state,
        muted=None if shown is None else shown.muted,
        led=None if shown is None else shown.led,
        fault=None if shown is None else shown.fault,
        accessory_fault=None if shown is None else shown.accessory_fault,
        state_error=None if health is None else health.state_error,
        uptime_s=uptime_s,
        counters=None if health is None else _counters(health),
    ).to_json()


def _counters(health: Health) -> StatusCounters:
    counts = health.counts
    return StatusCounters(
        invalid_messages=counts.invalid_messages,
        dropped_frames=health.dropped_frames,
        wake_detections=counts.wake_detections,
        sessions=counts.sessions,
        retained_commands=counts.retained_commands,
        arbitration_wins=counts.arbitration_wins,
        arbitration_losses=counts.arbitration_losses,
    )
