"""The control thread: inbound MQTT, session events, the button and the connection, in one queue.

It owns what the room can see and steer: the LED pattern, mute, and the retained status.
Other threads (paho's network thread, gpiozero's callback thread, the pipeline thread) only
call `submit()`, which hands their item (satellite.runtime.handovers) over through the one
queue. What it asks of the session machine goes out as data (satellite.core.requests).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from satellite.config import FollowupSettings
from satellite.core.ids import SatelliteState
from satellite.core.requests import Listen, SessionRequest, SetMuted
from satellite.core.session import Event, FaultChanged, Idle, Listening, MuteChanged, WakeDetected
from satellite.mqtt.inbound import (
    ClaimReceived,
    Cleared,
    CommandReceived,
    GatewayStateReceived,
    OverlayHintReceived,
    PeerClaim,
    PeerResult,
    PeerStatus,
    PeerStatusReceived,
    Rejected,
    ResultReceived,
    Topics,
    parse_inbound,
)
from satellite.runtime.follow_ups import FollowUps
from satellite.runtime.handovers import (
    TICK,
    AccessoryFault,
    ArbitrationDecided,
    ButtonPressed,
    ConnectionChanged,
    MqttMessage,
    OversizedMessage,
    SessionEvent,
    Tick,
)
from satellite.runtime.status_pacing import StatusPacer

log = logging.getLogger(__name__)

# How many rejected payloads are logged at WARNING before the rest go to DEBUG (a flood of
# garbage must not flood the journal; the counter in the status keeps the total).
_LOUD_REJECTIONS = 20


class Indicator(Protocol):
    """Chooses the LED pattern (satellite.leds.Indicator)."""

    def show(self, state: str) -> None: ...

    def show_inbound(self, state: str, source: str | None = None) -> None: ...

    def set_offline(self, offline: bool) -> None: ...

    def set_muted(self, muted: bool) -> None: ...

    def set_fault(self, faulted: bool) -> None: ...

    def tick(self) -> str: ...


class PatternSink(Protocol):
    """Shows a pattern on the hardware (satellite.leds.LedAnimator)."""

    def set_pattern(self, name: str) -> None: ...


class HouseholdListener(Protocol):
    """Takes what the arbitration group says (satellite.mqtt.arbitration.WakeArbiter)."""

    def claim_received(self, message: PeerClaim) -> None: ...

    def result_received(self, message: PeerResult) -> None: ...

    def peer_status(self, satellite_id: str, message: PeerStatus) -> None: ...

    def connection(self, connected: bool) -> None: ...


@dataclass(frozen=True)
class Reconfigure:
    """A reload changed the room's settings: what the controller works with from now on."""

    topics: Topics
    source: str
    indicator: Indicator
    leds: PatternSink
    save_mute: Callable[[bool], None]
    follow_up: FollowupSettings
    max_payload_bytes: int


Item = (
    MqttMessage
    | OversizedMessage
    | ConnectionChanged
    | ButtonPressed
    | SessionEvent
    | AccessoryFault
    | ArbitrationDecided
    | Reconfigure
)


@dataclass
class Counters:
    """Health figures for the status topic."""

    invalid_messages: int = 0
    wake_detections: int = 0
    sessions: int = 0
    retained_commands: int = 0
    arbitration_wins: int = 0
    arbitration_losses: int = 0


@dataclass(frozen=True)
class RoomView:
    """What the status topic reports, apart from counters and uptime."""

    state: SatelliteState
    muted: bool
    led: str
    fault: str | None = None
    accessory_fault: str | None = None


class Controller:
    """Applies every item in arrival order on its own thread; see the module docstring."""

    def __init__(
        self,
        *,
        topics: Topics,
        source: str,
        indicator: Indicator,
        leds: PatternSink,
        request_session: Callable[[SessionRequest], None],
        on_change: Callable[[RoomView, Counters], None],
        save_mute: Callable[[bool], None],
        follow_up: FollowupSettings,
        max_payload_bytes: int,
        muted: bool = False,
        household: HouseholdListener | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.topics = topics
        self.source = source
        self.indicator = indicator
        self.leds = leds
        self.request_session = request_session
        self.on_change = on_change
        self.save_mute = save_mute
        self.follow_ups = FollowUps(follow_up)
        self.max_payload_bytes = max_payload_bytes
        self.household = household
        self.counters = Counters()
        self.muted = muted
        self.fault: str | None = None
        self.accessory_fault: str | None = None
        self._state: SatelliteState = "muted" if muted else "idle"
        self._pattern: str | None = None  # on the LEDs
        self._view: RoomView | None = None  # the latest, published or not
        self._status = StatusPacer(now)
        self._queue: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="control", daemon=True)
        self.indicator.set_muted(muted)
        if muted:
            self.request_session(SetMuted(True))
        self._refresh(force=True)

    def start(self) -> None:
        """Start the control thread."""
        self._thread.start()

    def submit(self, item: Item) -> None:
        """Hand an item over from any thread; an oversized payload is dropped right here, so
        a flood of huge messages never waits in the queue."""
        if isinstance(item, MqttMessage) and len(item.payload) > self.max_payload_bytes:
            item = OversizedMessage(item.topic, len(item.payload))
        self._queue.put(item)

    def reconfigure(self, change: Reconfigure) -> None:
        """Take new settings from a reload, on the control thread, keeping the room's state."""
        self._queue.put(change)

    def close(self, timeout: float = 1.0) -> None:
        """Stop the control thread (bounded wait); idempotent."""
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def view(self) -> RoomView | None:
        """The latest view (the status may still be waiting for STATUS_INTERVAL_S)."""
        return self._view

    def _run(self) -> None:
        while True:
            item: Item | Tick | None
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                item = TICK
            if item is None:
                return
            try:
                self.handle(item)
            except Exception:
                log.exception("control: handling %s failed; continuing", type(item).__name__)

    def handle(self, item: Item | Tick) -> None:
        """Apply one item, show the pattern and publish the status if due (the control
        thread's step, also after every item of a flood that never lets the queue run dry;
        tests call it)."""
        self._apply(item)
        self._refresh()

    def _apply(self, item: Item | Tick) -> None:
        if isinstance(item, MqttMessage):
            self._inbound(item)
        elif isinstance(item, OversizedMessage):
            limit = self.max_payload_bytes
            self._reject(Rejected(item.topic, f"payload of {item.size} bytes exceeds {limit}"))
        elif isinstance(item, SessionEvent):
            self._session_event(item.event)
        elif isinstance(item, ConnectionChanged):
            self.indicator.set_offline(not item.connected)
            if self.household is not None:
                self.household.connection(item.connected)
        elif isinstance(item, ButtonPressed):
            self._set_muted(not self.muted, "button")
        elif isinstance(item, AccessoryFault):
            self.accessory_fault = item.reason
        elif isinstance(item, ArbitrationDecided):
            self._arbitration_decided(item.won)
        elif isinstance(item, Reconfigure):
            self._reconfigure(item)

    def _reconfigure(self, change: Reconfigure) -> None:
        moved = change.save_mute != self.save_mute  # another mute file: it gets our state
        self.topics, self.source = change.topics, change.source
        self.save_mute, self.follow_ups.settings = change.save_mute, change.follow_up
        self.max_payload_bytes = change.max_payload_bytes
        self.leds, self.indicator = change.leds, change.indicator
        # The new indicator starts from what the room sees now; the new LEDs show it.
        self.indicator.set_muted(self.muted)
        self.indicator.set_fault(self.fault is not None)
        if self._state in ("wake_detected", "listening"):
            self.indicator.show(self._state)
        if moved:
            self.save_mute(self.muted)
        # The next refresh shows the pattern on the new LEDs and publishes the status (on
        # the new topics, if they moved) as soon as STATUS_INTERVAL_S allows.
        self._pattern = None
        self._status.forget()

    def _inbound(self, message: MqttMessage) -> None:
        parsed = parse_inbound(
            message.topic, message.payload, topics=self.topics, max_bytes=self.max_payload_bytes
        )
        if isinstance(parsed, Cleared):
            log.debug("empty payload on %s (a retained message cleared): ignored", parsed.topic)
        elif message.retained and self.topics.is_command(message.topic):
            self._ignore_retained_command(message.topic)
        elif isinstance(parsed, Rejected):
            self._reject(parsed)
        elif isinstance(parsed, GatewayStateReceived):
            source = parsed.message.source
            if source != self.source:
                self.indicator.show_inbound(parsed.message.state, source)
        elif isinstance(parsed, OverlayHintReceived):
            self._overlay_hint(parsed)
        elif isinstance(parsed, ClaimReceived | ResultReceived | PeerStatusReceived):
            self._household(parsed, message.retained)
        else:
            self._command(parsed)

    def _household(
        self, parsed: ClaimReceived | ResultReceived | PeerStatusReceived, retained: bool
    ) -> None:
        household = self.household
        if household is None:
            return
        if isinstance(parsed, PeerStatusReceived):
            household.peer_status(parsed.satellite_id, parsed.message)
        elif retained:  # a claim is about one utterance: a stored one is stale
            log.debug("ignored a retained %s", type(parsed.message).__name__)
        elif isinstance(parsed, ClaimReceived):
            household.claim_received(parsed.message)
        else:
            household.result_received(parsed.message)

    def _arbitration_decided(self, won: bool) -> None:
        if won:
            self.counters.arbitration_wins += 1
        else:
            # Heard here, answered elsewhere: no WakeDetected reached us for it.
            self.counters.arbitration_losses += 1
            self.counters.wake_detections += 1
        self._mark_counters()

    def _ignore_retained_command(self, topic: str) -> None:
        # A retained command would act again at every (re)connect: only live ones act.
        self.counters.retained_commands += 1
        self._mark_counters()
        if self.counters.retained_commands == 1:
            log.warning(
                "ignored a retained message on %s: commands act only when sent live; "
                "clear it by publishing an empty retained payload: mosquitto_pub -r -n -t %s",
                topic,
                topic,
            )
        else:
            log.debug("ignored a retained message on %s", topic)

    def _reject(self, rejected: Rejected) -> None:
        self.counters.invalid_messages += 1
        self._mark_counters()
        level = (
            logging.WARNING if self.counters.invalid_messages <= _LOUD_REJECTIONS else logging.DEBUG
        )
        log.log(level, "dropped a message on %s: %s", rejected.topic, rejected.reason)

    def _overlay_hint(self, hint: OverlayHintReceived) -> None:
        if not hint.message.keep_open:
            self.indicator.show_inbound("idle", "an overlay hint")
            return
        self.indicator.show_inbound("attentive", "an overlay hint")
        follow_up = None if self.muted else self.follow_ups.request(hint.session_id)
        if follow_up is not None:
            self.request_session(follow_up)

    def _command(self, command: CommandReceived) -> None:
        name = command.message.command
        log.info("command %s", name)
        if name == "listen":
            self.request_session(Listen(session_id=None, no_speech_timeout_s=None))
        else:
            self._set_muted(name == "mute", "command")

    def _set_muted(self, muted: bool, why: str) -> None:
        if muted == self.muted:
            return
        self.muted = muted
        log.info("%s by %s", "muted" if muted else "unmuted", why)
        self.save_mute(muted)
        self.request_session(SetMuted(muted))

    def _session_event(self, event: Event) -> None:
        if isinstance(event, WakeDetected):
            self.counters.wake_detections += 1
            self._state = "wake_detected"
            self.indicator.show("wake_detected")
        elif isinstance(event, Listening):
            if self.follow_ups.utterance(event.session_id):
                self.counters.sessions += 1
            self._state = "listening"
            self.indicator.show("listening")
        elif isinstance(event, Idle):
            self._state = "idle"
            self.indicator.show("idle")
        elif isinstance(event, MuteChanged):
            self._state = "muted" if event.muted else "idle"
            self.indicator.set_muted(event.muted)
        elif isinstance(event, FaultChanged):
            self.fault = event.reason
            self._state = "error" if event.reason else ("muted" if self.muted else "idle")
            self.indicator.set_fault(event.reason is not None)

    def _mark_counters(self) -> None:
        self._status.counters_changed()

    def _refresh(self, force: bool = False) -> None:
        pattern = self.indicator.tick()
        if pattern != self._pattern:
            self.leds.set_pattern(pattern)
            self._pattern = pattern
        self._view = RoomView(self._state, self.muted, pattern, self.fault, self.accessory_fault)
        if force or self._status.due(self._view):
            # The first status is the birth the link sends once connected: it holds nothing
            # back, so a fault found at start goes out with it.
            self._status.sent(self._view, birth=force)
            self.on_change(self._view, self.counters)
