"""Wires the boundaries together: microphone -> session machine -> MQTT, LEDs and button."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from satellite import __version__
from satellite.audio.capture import Capture
from satellite.config import Settings
from satellite.core.ids import now_ms
from satellite.core.requests import Abandon, SetFault
from satellite.core.session import Event, SessionMachine, WakeDetected
from satellite.leds import build_indicator
from satellite.leds.accessories import Accessories
from satellite.mqtt.arbitration import Identity, Message, WakeArbiter
from satellite.mqtt.household import Outcome
from satellite.mqtt.link import MqttLink
from satellite.mqtt.outbound import Outbox, build_outbox
from satellite.mqtt.status import Health, Instance, status_payload, will_payload
from satellite.mqtt.takeover import OwnStatus
from satellite.runtime.control import Controller, Counters, Item, Reconfigure, RoomView
from satellite.runtime.engines import (
    Engines,
    build_machine,
    client_id,
    load_engines,
    reload_machine,
)
from satellite.runtime.handovers import (
    AccessoryFault,
    ArbitrationDecided,
    ButtonPressed,
    ConnectionChanged,
    MqttMessage,
    SessionEvent,
)
from satellite.runtime.mute_store import MuteStore, mute_file
from satellite.runtime.pipeline import Pipeline, Swap, log_event
from satellite.runtime.reload import ReloadPlan, Replacement
from satellite.runtime.systemd import Liveness, StatusLine

log = logging.getLogger(__name__)

# This process on the broker: the same in every status and in the will, across reloads.
INSTANCE = Instance(__version__)

EngineLoader = Callable[[Settings], Engines]


def _mute_path(settings: Settings) -> Path:
    return mute_file(settings.state_dir, settings.room_id)


def _identity(settings: Settings) -> Identity:
    return Identity(settings.satellite_id, settings.room_id, settings.arbitration.group)


def _status_place(settings: Settings) -> tuple[object, ...]:
    """The broker and the status topics: where the satellite says it is online."""
    topics = build_outbox(settings).status_topics()
    return (settings.mqtt.host, settings.mqtt.port, *topics)


class Satellite:
    """One room's satellite: models are loaded on construction, devices opened by `start()`,
    and a new configuration applied in place by `reload()`."""

    def __init__(
        self, settings: Settings, *, pin_factory: Any = None, load: EngineLoader = load_engines
    ) -> None:
        """`load` loads the models named by the settings (here and on a reload)."""
        self.settings = settings
        self.pin_factory = pin_factory
        self.started = time.monotonic()
        self.outbox = build_outbox(settings)
        self._load = load
        self._engines: Engines = load(settings)
        self.pipeline = Pipeline(
            capture=self._make_capture(settings),
            machine=build_machine(settings, self._engines),
            on_event=self._on_event,
        )
        self.mute_store = MuteStore(_mute_path(settings))
        self.accessories = self._make_accessories(settings)  # ConfigError: a HAT that can't work
        self.controller: Controller | None = None
        self.link = self._make_link(settings)
        self.arbiter = WakeArbiter(
            identity=_identity(settings),
            enabled=settings.arbitration.enabled,
            window_ms=settings.arbitration.window_ms,
            deliver=self._deliver,
            send=self._send_household,
            abandon=self._abandon,
            connected=lambda: self.link.connected,
            decided=lambda outcome: self._submit(ArbitrationDecided(outcome is Outcome.WON)),
        )
        self.last_wake: float | None = None
        # Held by reload() while it changes parts and by close(): a reload never applies to a
        # satellite that is closing.
        self._lock = threading.Lock()
        self._closed = False

    @property
    def capture(self) -> Capture:
        """The microphone in use (a reload may replace it)."""
        return self.pipeline.capture

    @property
    def machine(self) -> SessionMachine:
        """The session machine in use (a reload may replace it)."""
        return self.pipeline.machine

    def _make_capture(self, settings: Settings) -> Capture:
        return Capture(settings.audio, on_fault=self._on_mic_fault)

    def _make_link(self, settings: Settings) -> MqttLink:
        outbox = build_outbox(settings)
        # MQTT allows one will: it goes to the primary tree (v1 when dual publishing).
        will = (outbox.status_topics()[0], will_payload(settings, INSTANCE))
        room, satellite_id = settings.room_id, settings.satellite_id
        advice = (
            f"give each satellite its own satellite_id in its config (/etc/satellite/{room}.toml"
            f" when installed; this one is satellite_id {satellite_id!r} in room {room!r})"
        )
        return MqttLink(
            settings.mqtt,
            client_id=client_id(settings),
            will=will,
            subscriptions=outbox.topics.subscriptions(),
            on_message=lambda topic, payload, retained: self._submit(
                MqttMessage(topic, payload, retained)
            ),
            on_connection_change=lambda up: self._submit(ConnectionChanged(up)),
            own_status=OwnStatus(INSTANCE.instance_id, advice),
        )

    def start(self) -> None:
        """Open the microphone, LEDs and button (or retry them in the background), start
        processing, connect (in the background)."""
        self.capture.open()
        self.controller = self._make_controller()
        self.controller.start()
        self.pipeline.start()
        self.accessories.start()
        self.link.start()
        self._log_config()

    def _log_config(self) -> None:
        wake = self.settings.wake
        log.info("wake models %s, wake threshold %g", ", ".join(wake.models), wake.threshold)
        log.info("listening in room %s as %s", self.settings.room_id, self.settings.satellite_id)

    def _make_controller(self) -> Controller:
        return Controller(
            topics=self.outbox.topics,
            source=self.outbox.source,
            indicator=build_indicator(self.settings.leds),
            leds=self.accessories,
            request_session=self.pipeline.request,
            on_change=self._publish_status,
            save_mute=self.mute_store.save,
            muted=self.mute_store.load(),
            follow_up=self.settings.followup,
            max_payload_bytes=self.settings.mqtt.max_payload_bytes,
            household=self.arbiter,
        )

    def _make_accessories(self, settings: Settings) -> Accessories:
        return Accessories(
            settings.leds,
            settings.button,
            on_press=lambda: self._submit(ButtonPressed()),
            on_fault=lambda reason: self._submit(AccessoryFault(reason)),
            pin_factory=self.pin_factory,
        )

    # -- reload (the daemon's reload thread) ----------------------------------------------

    def reload(self, settings: Settings, *, timeout: float | None = None) -> ReloadPlan:
        """Apply `settings` in place, changing only what differs; returns what changed.

        Models load again only when `engine_key` changes, on the caller's thread while the
        old ones keep listening. The MQTT link and its offline queue stay unless the broker
        settings or the identity change (then the queue moves to the new link). A session in
        progress finishes on the old machine before a new one takes over. Raises
        SatelliteError, with nothing changed, when the new settings cannot be applied.
        """
        plan = ReloadPlan.between(self.settings, settings)
        parts = self._build(settings, plan)  # SatelliteError: nothing changed, nothing left open
        with self._lock:
            if self._closed:
                parts.close()
                return plan
            try:
                swap = self._apply(settings, plan, parts)
            except BaseException:
                parts.close(keep=(self.link, self.accessories))  # what it did not take
                raise
        if swap.machine is not None or swap.capture is not None:
            self.pipeline.replace(swap)
            if not swap.done.wait(timeout or settings.stt.max_utterance_s + 10.0):
                log.warning("reload: the pipeline did not take the new machine in time")
        self._log_config()
        return plan

    def _build(self, settings: Settings, plan: ReloadPlan) -> Replacement:
        """What `settings` needs new, built and checked, none of it started or in use yet."""
        parts = Replacement(self._engines)
        try:
            if plan.engines:
                parts.engines = self._load(settings)
            if (settings.leds, settings.button) != (self.settings.leds, self.settings.button):
                parts.accessories = self._make_accessories(settings)  # a HAT that can't work
            if plan.audio:
                parts.capture = self._make_capture(settings)
            if plan.link:
                parts.link = self._make_link(settings)
                parts.link.prepare()  # wrong credentials or TLS files: ConfigError
        except BaseException:
            parts.close()
            raise
        return parts

    def _apply(self, settings: Settings, plan: ReloadPlan, parts: Replacement) -> Swap:
        """Take `parts` in (under the lock); the new machine and microphone are for the
        pipeline to take between utterances."""
        if parts.accessories is not None:
            self.accessories.close()  # frees the pins for the new ones
            self.accessories = parts.accessories
            parts.accessories.start()
        if plan.room:
            self._reload_room(settings)
        if plan.room or plan.arbitration:
            # Before a new link starts: the peers' statuses it brings go to the new group.
            arbitration = settings.arbitration
            self.arbiter.reconfigure(
                _identity(settings), enabled=arbitration.enabled, window_ms=arbitration.window_ms
            )
        try:
            if parts.link is not None:
                self._replace_link(settings, parts.link)
            self.settings, self._engines = settings, parts.engines
            if plan.room:
                # After the settings and the link: the status it publishes is the new one, on
                # the new link (a status sent on the old one would never reach the new).
                self._reconfigure_controller(settings)
        finally:
            if parts.link is not None and self.link is parts.link:
                # After the controller has the new topics; started even if that failed: a
                # link in use that never connects would silence the satellite.
                parts.link.start()
        engines, same = parts.engines, not plan.engines
        return Swap(
            machine=(
                (lambda old: reload_machine(settings, engines, old, same_engines=same))
                if plan.machine
                else None
            ),
            capture=parts.capture,
        )

    def _reload_room(self, settings: Settings) -> None:
        """The mute file and topics, for new LED/button/follow-up/topic settings (the
        controller takes them once the reload has the new link: see `reload`)."""
        if _mute_path(settings) != self.mute_store.path:
            self.mute_store = MuteStore(_mute_path(settings))
        self.outbox = build_outbox(settings)

    def _reconfigure_controller(self, settings: Settings) -> None:
        if self.controller is None:
            return
        self.controller.reconfigure(
            Reconfigure(
                topics=self.outbox.topics,
                source=self.outbox.source,
                indicator=build_indicator(settings.leds),
                leds=self.accessories,
                save_mute=self.mute_store.save,
                follow_up=settings.followup,
                max_payload_bytes=settings.mqtt.max_payload_bytes,
            )
        )

    def _replace_link(self, settings: Settings, link: MqttLink) -> None:
        """Move to `link` (not started yet): the offline queue goes with it, in order, ahead
        of what comes next."""
        old, self.link = self.link, link
        moved = old.take_queue()
        if _status_place(self.settings) != _status_place(settings) and old.connected:
            self._say_offline(old, build_outbox(self.settings))
        old.close()
        link.adopt(moved + old.take_queue())
        if moved:
            log.info("reload: %d queued messages moved to the new MQTT link", len(moved))

    # -- threads' hand-overs --------------------------------------------------------------

    def _submit(self, item: Item) -> None:
        if self.controller is not None:
            self.controller.submit(item)

    def _on_mic_fault(self, reason: str | None) -> None:
        # Runs on the caller of Capture.open() or on the capture thread: hand over.
        self.pipeline.request(SetFault(reason))

    def _on_event(self, event: Event) -> None:
        # Runs on the pipeline thread. The arbiter delivers it now, or holds it while the
        # satellites of the group decide who answers a wake word.
        if isinstance(event, WakeDetected):
            self.last_wake = time.time()
        audio_age_s = time.monotonic() - self.capture.read_at
        log_event(event, audio_age_s)
        self.arbiter.on_event(event, now_ms() - round(audio_age_s * 1000))

    def _deliver(self, event: Event) -> None:
        # Runs on the pipeline thread, or on the arbiter's timer thread under its lock (so in
        # the machine's order): publish first (latency), then tell the controller.
        for outgoing in self.outbox.messages(event):
            self.link.publish(outgoing.topic, outgoing.message.to_json(), qos=outgoing.qos)
        self._submit(SessionEvent(event))

    def _send_household(self, message: Message) -> None:
        outgoing = self.outbox.household(message)
        if outgoing is None:  # arbitration was switched off by a reload meanwhile
            return
        self.link.publish(outgoing.topic, outgoing.message.to_json(), qos=outgoing.qos)

    def _abandon(self, session_id: str) -> None:
        # Runs under the arbiter's lock: the pipeline ends the utterance between frames.
        self.pipeline.request(Abandon(session_id))

    def _status(
        self, *, online: bool, view: RoomView | None = None, health: Health | None = None
    ) -> bytes:
        uptime_s = round(time.monotonic() - self.started, 1)
        return status_payload(
            self.settings, INSTANCE, online=online, uptime_s=uptime_s, shown=view, health=health
        )

    def _publish_status(self, view: RoomView, counters: Counters) -> None:
        # Runs on the control thread. As the birth message it is also re-sent on reconnect.
        health = Health(counters, self.capture.dropped, self.mute_store.problem)
        payload = self._status(online=True, view=view, health=health)
        for topic in self.outbox.status_topics():
            self.link.set_birth(topic, payload)

    def liveness(self) -> Liveness:
        """The watchdog's evidence of life."""
        capture = self.capture
        return Liveness(
            self.pipeline.frames_processed, capture.heartbeat, capture.fault is not None
        )

    def status_line(self) -> str:
        """One human line for systemd's STATUS=."""
        capture, mqtt = self.capture, self.settings.mqtt
        view = self.controller.view if self.controller else None
        return str(
            StatusLine(
                room_id=self.settings.room_id,
                muted=view is not None and view.muted,
                mic=capture.device.name if capture.device else self.settings.audio.device,
                mic_rate=capture.rate,
                mic_fault=capture.fault,
                broker=f"{mqtt.host}:{mqtt.port}",
                connected=self.link.connected,
                last_wake=self.last_wake,
                accessory_fault=self.accessories.fault,
            )
        )

    def _say_offline(self, link: MqttLink, outbox: Outbox) -> None:
        payload = self._status(online=False)
        for topic in outbox.status_topics():
            link.publish_wait(topic, payload, qos=1, retain=True, timeout=0.5)

    def close(self) -> None:
        """Stop everything, say `online: false` on the status topic, release devices."""
        with self._lock:
            self._closed = True
        self.pipeline.stop()
        self.arbiter.close()
        self.capture.close()
        if self.controller is not None:
            self.controller.close()
        self.accessories.close()
        if self.link.connected:
            self._say_offline(self.link, self.outbox)
        self.link.close()
