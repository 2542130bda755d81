"""What a configuration reload has to change: the difference between two settings."""

from __future__ import annotations

from dataclasses import dataclass, fields

from satellite.config import Settings
from satellite.runtime.engines import engine_key


@dataclass(frozen=True)
class ReloadPlan:
    """Which parts of a running satellite a new configuration touches.

    Everything else keeps running untouched: a reload that changes the LED brightness does
    not reload the models, reopen the microphone or reconnect to the broker.
    """

    engines: bool  # load the wake/speech models again (engine_key changed)
    machine: bool  # a new session machine (any wake or stt setting), around the same engines
    audio: bool  # reopen the microphone
    link: bool  # a new MQTT connection (broker settings, room or satellite id)
    room: bool  # the control side: LEDs, button, follow-up, topics, mute file
    arbitration: bool  # the wake arbiter: on/off, window, group (no models, no microphone)

    @classmethod
    def between(cls, old: Settings, new: Settings) -> ReloadPlan:
        """The plan that takes a satellite running `old` to `new`."""
        # Arbitration on/off and its group change the subscriptions: a new link.
        old_group = old.arbitration.group if old.arbitration.enabled else None
        new_group = new.arbitration.group if new.arbitration.enabled else None
        link = (
            old.mqtt != new.mqtt
            or old.room_id != new.room_id
            or old.satellite_id != new.satellite_id
            or old_group != new_group
        )
        return cls(
            engines=engine_key(old) != engine_key(new),
            machine=old.wake != new.wake or old.stt != new.stt or old.models != new.models,
            audio=old.audio != new.audio,
            link=link,
            room=link
            or old.leds != new.leds
            or old.button != new.button
            or old.followup != new.followup
            or old.state_dir != new.state_dir,
            arbitration=old.arbitration != new.arbitration,
        )

    @property
    def changes(self) -> list[str]:
        """The names of the parts that change, for the log."""
        return [f.name for f in fields(self) if getattr(self, f.name)]
