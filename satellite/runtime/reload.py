"""What a configuration reload has to change: the difference between two settings."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, fields

from satellite.audio.capture import Capture
from satellite.config import Settings
from satellite.leds.accessories import Accessories
from satellite.mqtt.link import MqttLink
from satellite.runtime.engines import Engines, engine_key


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


@dataclass
class Replacement:
    """The parts a reload builds before it changes anything: the satellite takes them in, and
    a reload that fails closes the ones it did not take (none of them left half-started)."""

    engines: Engines  # the running ones unless the plan loads new models
    link: MqttLink | None = None  # prepared, not started
    accessories: Accessories | None = None  # not started
    capture: Capture | None = None  # not opened

    def close(self, *, keep: Collection[object] = ()) -> None:
        """Close every part but those in `keep` (the ones in use); idempotent."""
        for part in (self.link, self.accessories, self.capture):
            if part is not None and not any(part is used for used in keep):
                part.close()
