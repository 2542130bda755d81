"""Wires the boundaries together: microphone -> session machine -> MQTT, LEDs and button."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from satellite import __version__
from satellite.audio.capture import Capture, FrameAssembler
from satellite.config import Settings
from satellite.core.frames import Frame
from satellite.core.ids import new_id, now_ms
from satellite.core.requests import Abandon, SessionRequest, SetFault
from satellite.core.session import Event, Final, Listening, SessionMachine, WakeDetected
from satellite.leds import build_indicator
from satellite.leds.accessories import Accessories
from satellite.mqtt.arbitration import Identity, Message, WakeArbiter
from satellite.mqtt.contracts import StatusCounters, StatusMessage
from satellite.mqtt.household import Outcome
from satellite.mqtt.link import MqttLink
from satellite.mqtt.outbound import Outbox, build_outbox
from satellite.mqtt.takeover import OwnStatus
from satellite.runtime.control import Controller, Counters, Item, Reconfigure, RoomView
from satellite.runtime.engines import Engines, build_machine, client_id, load_engines
from satellite.runtime.handovers import (
    AccessoryFault,
    ArbitrationDecided,
    ButtonPressed,
    ConnectionChanged,
    MqttMessage,
    SessionEvent,
)
from satellite.runtime.mute_store import MuteStore, mute_file
from satellite.runtime.reload import ReloadPlan
from satellite.runtime.systemd import Liveness

log = logging.getLogger(__name__)

# This process on the broker: the same in every status and in the will, across reloads.
INSTANCE_ID = new_id()
STARTED_MS = now_ms()


def log_event(event: Event, audio_age_s: float = 0.0) -> None:
    """One lifecycle line per session event (never per frame), with journal fields.

    `audio_age_s`: how long ago the device handed over the audio that raised the event.
    """
    fields: dict[str, str] = {"SESSION_ID": event.session_id}
    if isinstance(event, Listening | Final):
        fields["UTT_ID"] = event.utt_id
    if isinstance(event, WakeDetected):
        log.info(
            "wake word %s (score %.2f, %.1f ms after its audio was read)",
            event.wake_word,
            event.score,
            audio_age_s * 1000,
            extra=fields,
        )
    elif isinstance(event, Final):
        words, confidence = len(event.transcript.words), event.transcript.confidence
        log.info("final transcript: %d words, confidence %.2f", words, confidence, extra=fields)
    else:
        log.debug("%s", event, extra=fields)


@dataclass(frozen=True)
class Swap:
    """A new session machine and/or microphone for the pipeline (a reload's), and when done."""

    machine: Callable[[], SessionMachine] | None = None  # built on the pipeline thread
    capture: Capture | None = None
    done: threading.Event = field(default_factory=threading.Event)


class Pipeline:
    """The pipeline thread: capture queue -> frames -> session machine -> `on_event`.

    Other threads change the session only through `request()`, applied between frames, and
    replace its machine or microphone only through `replace()`.
    """

    def __init__(
        self, *, capture: Capture, machine: SessionMachine, on_event: Callable[[Event], None]
    ) -> None:
        self.capture = capture
        self.machine = machine
        self.on_event = on_event
        self.frames_processed = 0
        self._requests: queue.SimpleQueue[SessionRequest] = queue.SimpleQueue()
        self._swaps: queue.SimpleQueue[Swap] = queue.SimpleQueue()
        self._swap: Swap | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pipeline", daemon=True)

    def start(self) -> None:
        """Start consuming the capture queue."""
        self._thread.start()

    def request(self, change: SessionRequest) -> None:
        """Have the session machine apply `change` on the pipeline thread (from any thread)."""
        self._requests.put(change)

    def replace(self, swap: Swap) -> None:
        """Apply `swap` on the pipeline thread as soon as no utterance is in progress: the one
        being heard finishes on the old machine first. `swap.done` is set once it applied."""
        self._swaps.put(swap)

    def stop(self, timeout: float = 1.0) -> None:
        """Ask the thread to stop and wait (bounded) for it."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        assembler: FrameAssembler | None = None
        generation = 0
        while not self._stop.is_set():
            self._apply_requests()
            self._apply_swap()
            chunk = self.capture.read(timeout=0.1)
            if chunk is None:
                continue
            if assembler is None or generation != self.capture.generation:
                # The device was (re)opened, maybe at another rate: a fresh resampler.
                generation, assembler = self.capture.generation, self._assembler()
            for frame in assembler.push(chunk):
                self._process(frame)

    def _assembler(self) -> FrameAssembler:
        settings = self.capture.settings
        return FrameAssembler(
            rate=self.capture.rate, channels=settings.channels, channel=settings.channel
        )

    def _apply_requests(self) -> None:
        while True:
            try:
                change = self._requests.get_nowait()
            except queue.Empty:
                return
            self._emit(self.machine.apply(change))

    def _apply_swap(self) -> None:
        if self._swap is None:
            try:
                self._swap = self._swaps.get_nowait()
            except queue.Empty:
                return
        if self.machine.listening:
            return
        swap, self._swap = self._swap, None
        if swap.capture is not None:
            old, self.capture = self.capture, swap.capture
            old.close()
            self.capture.open()
            if old.fault is not None and self.capture.fault is None:
                self._emit(self.machine.set_fault(None))
        if swap.machine is not None:
            machine = swap.machine()
            machine.muted = self.machine.muted
            self.machine = machine
        swap.done.set()

    def _process(self, frame: Frame) -> None:
        try:
            events = self.machine.process(frame)
        except Exception:
            log.exception("processing a frame failed; continuing")
            return
        self.frames_processed += 1
        self._emit(events)

    def _emit(self, events: list[Event]) -> None:
        for event in events:
            self.on_event(event)


def _mute_path(settings: Settings) -> Path:
    return mute_file(settings.state_dir, settings.room_id)


def _identity(settings: Settings) -> Identity:
    return Identity(settings.satellite_id, settings.room_id, settings.arbitration.group)


class Satellite:
    """One room's satellite: models are loaded on construction, devices opened by `start()`,
    and a new configuration applied in place by `reload()`."""

    def __init__(self, settings: Settings, *, pin_factory: Any = None) -> None:
        self.settings = settings
        self.pin_factory = pin_factory
        self.started = time.monotonic()
        self.outbox = build_outbox(settings)
        self._engines: Engines = load_engines(settings)
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
        will = (outbox.status_topics()[0], self._will(settings))
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
            own_status=OwnStatus(INSTANCE_ID, advice),
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
        engines = load_engines(settings) if plan.engines else self._engines
        link = self._make_link(settings) if plan.link else None
        if link is not None:
            link.prepare()  # wrong credentials or TLS files: ConfigError, nothing changed yet
        with self._lock:
            if self._closed:
                return plan
            if plan.room:
                self._reload_room(settings)
            if plan.room or plan.arbitration:
                # Before a new link starts: the peers' statuses it brings go to the new group.
                arbitration = settings.arbitration
                self.arbiter.reconfigure(
                    _identity(settings),
                    enabled=arbitration.enabled,
                    window_ms=arbitration.window_ms,
                )
            if link is not None:
                self._replace_link(settings, link)
            swap = Swap(
                machine=(lambda: build_machine(settings, engines)) if plan.machine else None,
                capture=self._make_capture(settings) if plan.audio else None,
            )
            self.settings, self._engines = settings, engines
            if plan.room:
                # After the settings and the link: the status it publishes is the new one, on
                # the new link (a status sent on the old one would never reach the new).
                self._reconfigure_controller(settings)
            if link is not None:
                link.start()  # after the controller has the new topics to read what it brings
        if swap.machine is not None or swap.capture is not None:
            self.pipeline.replace(swap)
            if not swap.done.wait(timeout or settings.stt.max_utterance_s + 10.0):
                log.warning("reload: the pipeline did not take the new machine in time")
        self._log_config()
        return plan

    def _reload_room(self, settings: Settings) -> None:
        """LEDs, button, mute file and topics, for new LED/button/follow-up/topic settings
        (the controller takes them once the reload has the new link: see `reload`)."""
        old = self.settings
        if (settings.leds, settings.button) != (old.leds, old.button):
            accessories = self._make_accessories(settings)  # ConfigError: nothing changed yet
            self.accessories.close()  # frees the pins for the new ones
            self.accessories = accessories
            accessories.start()
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
        if self._status_elsewhere(settings) and old.connected:
            self._say_offline(old, build_outbox(self.settings))
        old.close()
        link.adopt(moved + old.take_queue())
        if moved:
            log.info("reload: %d queued messages moved to the new MQTT link", len(moved))

    def _status_elsewhere(self, settings: Settings) -> bool:
        """Whether the status topic or the broker changes: the old one then hears we left."""
        old, new = self.settings, settings
        return (old.mqtt.host, old.mqtt.port, old.room_id, old.satellite_id) != (
            new.mqtt.host,
            new.mqtt.port,
            new.room_id,
            new.satellite_id,
        ) or build_outbox(old).status_topics() != build_outbox(new).status_topics()

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

    def _will(self, settings: Settings) -> bytes:
        # The broker publishes it at a moment nobody knows now: no timestamp, uptime or state.
        return StatusMessage(
            online=False,
            room_id=settings.room_id,
            satellite_id=settings.satellite_id,
            instance_id=INSTANCE_ID,
            since=STARTED_MS,
            version=__version__,
        ).to_json()

    def _status(
        self,
        view: RoomView | None,
        *,
        online: bool,
        counters: Counters | None = None,
        settings: Settings | None = None,
    ) -> bytes:
        settings = settings or self.settings
        return StatusMessage(
            online=online,
            room_id=settings.room_id,
            satellite_id=settings.satellite_id,
            instance_id=INSTANCE_ID,
            since=STARTED_MS,
            timestamp=now_ms(),
            version=__version__,
            group=settings.arbitration.group if settings.arbitration.enabled else None,
            state=None if view is None else view.state,
            muted=None if view is None else view.muted,
            led=None if view is None else view.led,
            fault=None if view is None else view.fault,
            accessory_fault=None if view is None else view.accessory_fault,
            state_error=None if view is None else self.mute_store.problem,
            uptime_s=round(time.monotonic() - self.started, 1),
            counters=None
            if counters is None
            else StatusCounters(
                invalid_messages=counters.invalid_messages,
                dropped_frames=self.capture.dropped,
                wake_detections=counters.wake_detections,
                sessions=counters.sessions,
                retained_commands=counters.retained_commands,
                arbitration_wins=counters.arbitration_wins,
                arbitration_losses=counters.arbitration_losses,
            ),
        ).to_json()

    def _publish_status(self, view: RoomView, counters: Counters) -> None:
        # Runs on the control thread. As the birth message it is also re-sent on reconnect.
        payload = self._status(view, online=True, counters=counters)
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
        capture = self.capture
        device = capture.device.name if capture.device else self.settings.audio.device
        broker = "connected" if self.link.connected else "connecting"
        wake = (
            time.strftime("%H:%M:%S", time.localtime(self.last_wake)) if self.last_wake else "never"
        )
        view = self.controller.view if self.controller else None
        muted = " (muted)" if view is not None and view.muted else ""
        mic = f"mic {device!r} at {capture.rate} Hz"
        if capture.fault is not None:
            mic = f"mic {device!r} FAULT ({capture.fault})"
        mqtt = self.settings.mqtt
        accessories = self.accessories.fault
        leds = f"; LEDs/button FAULT ({accessories})" if accessories else ""
        return (
            f"room {self.settings.room_id}{muted}; {mic}; "
            f"broker {mqtt.host}:{mqtt.port} {broker}; last wake {wake}{leds}"
        )

    def _say_offline(self, link: MqttLink, outbox: Outbox) -> None:
        payload = self._status(None, online=False)
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
