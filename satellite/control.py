"""The control thread: inbound MQTT, session events, the button and the connection, in one queue.

It owns what the room can see and steer: the LED pattern, mute, and the retained status.
Other threads (paho's network thread, gpiozero's callback thread, the pipeline thread) only
call `submit()`, which hands their item over through the one queue.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from satellite.contracts import SatelliteState
from satellite.inbound import (
    CommandReceived,
    GatewayStateReceived,
    OverlayHintReceived,
    Rejected,
    parse_inbound,
)
from satellite.session import (
    Event,
    FaultChanged,
    Idle,
    Listening,
    MuteChanged,
    SessionMachine,
    WakeDetected,
)
from satellite.topics import Topics

log = logging.getLogger(__name__)

# How many rejected payloads are logged at WARNING before the rest go to DEBUG (a flood of
# garbage must not flood the journal; the counter in the status keeps the total).
_LOUD_REJECTIONS = 20


class Indicator(Protocol):
    """Chooses the LED pattern (satellite.leds.Indicator)."""

    def show(self, state: str) -> None: ...

    def set_offline(self, offline: bool) -> None: ...

    def set_muted(self, muted: bool) -> None: ...

    def set_fault(self, faulted: bool) -> None: ...

    def tick(self) -> str: ...


class PatternSink(Protocol):
    """Shows a pattern on the hardware (satellite.leds.LedAnimator)."""

    def set_pattern(self, name: str) -> None: ...


SessionRequest = Callable[[SessionMachine], list[Event]]


@dataclass(frozen=True)
class MqttMessage:
    """A message from a subscribed topic (submitted by paho's thread)."""

    topic: str
    payload: bytes


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
class Reconfigure:
    """A reload changed the room's settings: what the controller works with from now on."""

    topics: Topics
    source: str
    indicator: Indicator
    leds: PatternSink
    save_mute: Callable[[bool], None]
    follow_up: FollowUp
    max_payload_bytes: int


Item = (
    MqttMessage
    | OversizedMessage
    | ConnectionChanged
    | ButtonPressed
    | SessionEvent
    | AccessoryFault
    | Reconfigure
)


@dataclass
class Counters:
    """Health figures for the status topic."""

    invalid_messages: int = 0
    wake_detections: int = 0
    sessions: int = 0


@dataclass(frozen=True)
class RoomView:
    """What the status topic reports, apart from counters and uptime."""

    state: SatelliteState
    muted: bool
    led: str
    fault: str | None = None
    accessory_fault: str | None = None


@dataclass(frozen=True)
class FollowUp:
    """Follow-up listening after `overlay_hint` keep_open (off unless the room enables it)."""

    enabled: bool = False
    no_speech_timeout_s: float = 4.0


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
        muted: bool = False,
        follow_up: FollowUp = FollowUp(),
        max_payload_bytes: int = 65536,
    ) -> None:
        self.topics = topics
        self.source = source
        self.indicator = indicator
        self.leds = leds
        self.request_session = request_session
        self.on_change = on_change
        self.save_mute = save_mute
        self.follow_up = follow_up
        self.max_payload_bytes = max_payload_bytes
        self.counters = Counters()
        self.muted = muted
        self.fault: str | None = None
        self.accessory_fault: str | None = None
        self._state: SatelliteState = "muted" if muted else "idle"
        self._own_sessions: deque[str] = deque(maxlen=16)
        self._view: RoomView | None = None
        self._queue: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="control", daemon=True)
        self._counters_dirty_since: float | None = None
        self.indicator.set_muted(muted)
        if muted:
            self.request_session(lambda machine: machine.set_muted(True))
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
        """The last reported view."""
        return self._view

    def _run(self) -> None:
        while True:
            item: Item | _Tick | None
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                item = _TICK
            if item is None:
                return
            try:
                self.handle(item)
            except Exception:
                log.exception("control: handling %s failed; continuing", type(item).__name__)

    def handle(self, item: Item | _Tick) -> None:
        """Apply one item and report any change (the control thread's step; tests call it)."""
        self._apply(item)
        self._refresh()

    def _apply(self, item: Item | _Tick) -> None:
        if isinstance(item, MqttMessage):
            self._inbound(item)
        elif isinstance(item, OversizedMessage):
            limit = self.max_payload_bytes
            self._reject(Rejected(item.topic, f"payload of {item.size} bytes exceeds {limit}"))
        elif isinstance(item, SessionEvent):
            self._session_event(item.event)
        elif isinstance(item, ConnectionChanged):
            self.indicator.set_offline(not item.connected)
        elif isinstance(item, ButtonPressed):
            self._set_muted(not self.muted, "button")
        elif isinstance(item, AccessoryFault):
            self.accessory_fault = item.reason
        elif isinstance(item, Reconfigure):
            self._reconfigure(item)

    def _reconfigure(self, change: Reconfigure) -> None:
        moved = change.save_mute != self.save_mute  # another mute file: it gets our state
        self.topics, self.source = change.topics, change.source
        self.save_mute, self.follow_up = change.save_mute, change.follow_up
        self.max_payload_bytes = change.max_payload_bytes
        self.leds, self.indicator = change.leds, change.indicator
        # The new indicator starts from what the room sees now; the new LEDs show it.
        self.indicator.set_muted(self.muted)
        self.indicator.set_fault(self.fault is not None)
        if self._state in ("wake_detected", "listening"):
            self.indicator.show(self._state)
        if moved:
            self.save_mute(self.muted)
        self._view = None  # the next refresh shows the pattern and publishes the status

    def _inbound(self, message: MqttMessage) -> None:
        parsed = parse_inbound(
            message.topic, message.payload, topics=self.topics, max_bytes=self.max_payload_bytes
        )
        if isinstance(parsed, Rejected):
            self._reject(parsed)
        elif isinstance(parsed, GatewayStateReceived):
            if parsed.message.source != self.source:
                self.indicator.show(parsed.message.state)
        elif isinstance(parsed, OverlayHintReceived):
            self._overlay_hint(parsed)
        else:
            self._command(parsed)

    def _reject(self, rejected: Rejected) -> None:
        self.counters.invalid_messages += 1
        self._mark_counters()
        level = (
            logging.WARNING if self.counters.invalid_messages <= _LOUD_REJECTIONS else logging.DEBUG
        )
        log.log(level, "dropped a message on %s: %s", rejected.topic, rejected.reason)

    def _overlay_hint(self, hint: OverlayHintReceived) -> None:
        if not hint.message.keep_open:
            self.indicator.show("idle")
            return
        self.indicator.show("attentive")
        if self.follow_up.enabled and hint.session_id in self._own_sessions and not self.muted:
            timeout = self.follow_up.no_speech_timeout_s
            session_id = hint.session_id
            self.request_session(lambda machine: machine.listen(session_id, timeout))

    def _command(self, command: CommandReceived) -> None:
        name = command.message.command
        log.info("command %s", name)
        if name == "listen":
            self.request_session(lambda machine: machine.listen())
        else:
            self._set_muted(name == "mute", "command")

    def _set_muted(self, muted: bool, why: str) -> None:
        if muted == self.muted:
            return
        self.muted = muted
        log.info("%s by %s", "muted" if muted else "unmuted", why)
        self.save_mute(muted)
        self.request_session(lambda machine: machine.set_muted(muted))

    def _session_event(self, event: Event) -> None:
        if isinstance(event, WakeDetected):
            self.counters.wake_detections += 1
            self._state = "wake_detected"
            self.indicator.show("wake_detected")
        elif isinstance(event, Listening):
            if event.session_id not in self._own_sessions:
                self._own_sessions.append(event.session_id)
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
        if self._counters_dirty_since is None:
            self._counters_dirty_since = time.monotonic()

    def _refresh(self, force: bool = False) -> None:
        pattern = self.indicator.tick()
        view = RoomView(self._state, self.muted, pattern, self.fault, self.accessory_fault)
        counters_due = (
            self._counters_dirty_since is not None
            and time.monotonic() - self._counters_dirty_since >= 1.0
        )
        if view == self._view and not counters_due and not force:
            return
        if self._view is None or view.led != self._view.led:
            self.leds.set_pattern(pattern)
        self._view = view
        self._counters_dirty_since = None
        self.on_change(view, self.counters)


class _Tick:
    """Nothing arrived for a while: apply LED timeouts."""


_TICK = _Tick()
