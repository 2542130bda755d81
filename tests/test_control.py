"""The control thread's decisions, with a fake indicator and LED sink."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

from satellite.config import MqttSettings
from satellite.control import (
    ButtonPressed,
    ConnectionChanged,
    Controller,
    Counters,
    FollowUp,
    Item,
    MqttMessage,
    OversizedMessage,
    RoomView,
    SessionEvent,
    SessionRequest,
)
from satellite.session import EndReason, FaultChanged, Idle, Listening, MuteChanged, WakeDetected
from satellite.topics import Topics

TOPICS = Topics(room_id="salon", satellite_id="sat1", mqtt=MqttSettings())
STATE = "v1/voice_assistant/room/salon/session/{}/state"
HINT = "v1/voice_assistant/room/salon/session/{}/overlay_hint"
COMMAND = "v1/voice_assistant/room/salon/satellite/sat1/command"


@dataclass
class FakeIndicator:
    shown: list[str] = field(default_factory=list)
    muted: bool = False
    offline: bool = False
    faulted: bool = False

    def show(self, state: str) -> None:
        self.shown.append(state)

    def set_offline(self, offline: bool) -> None:
        self.offline = offline

    def set_muted(self, muted: bool) -> None:
        self.muted = muted

    def set_fault(self, faulted: bool) -> None:
        self.faulted = faulted

    def tick(self) -> str:
        if self.muted:
            return "muted"
        return self.shown[-1] if self.shown else "idle"


@dataclass
class FakeLeds:
    patterns: list[str] = field(default_factory=list)

    def set_pattern(self, name: str) -> None:
        self.patterns.append(name)


def bare_controller(**overrides: Any) -> Controller:
    """A controller on fakes that ignore everything, with `overrides` to its keywords."""
    keywords: dict[str, Any] = {
        "topics": TOPICS,
        "source": "satellite/sat1",
        "indicator": FakeIndicator(),
        "leds": FakeLeds(),
        "request_session": lambda change: None,
        "on_change": lambda view, counters: None,
        "save_mute": lambda muted: None,
    }
    return Controller(**{**keywords, **overrides})


class Harness:
    """A controller driven synchronously through `handle()` (no thread)."""

    def __init__(self, *, muted: bool = False, follow_up: FollowUp | None = None) -> None:
        self.indicator = FakeIndicator()
        self.leds = FakeLeds()
        self.requests: list[SessionRequest] = []
        self.views: list[RoomView] = []
        self.saved: list[bool] = []
        self.controller = Controller(
            topics=TOPICS,
            source="satellite/sat1",
            indicator=self.indicator,
            leds=self.leds,
            request_session=self.requests.append,
            on_change=lambda view, counters: self.views.append(view),
            save_mute=self.saved.append,
            muted=muted,
            follow_up=follow_up or FollowUp(),
            max_payload_bytes=1024,
        )

    def send(self, *items: Item) -> RoomView:
        for item in items:
            self.controller.handle(item)
        return self.views[-1]


@pytest.fixture
def harness() -> Harness:
    return Harness()


def test_control_gateway_state_drives_the_leds(harness: Harness) -> None:
    view = harness.send(MqttMessage(STATE.format("s1"), b'{"state":"processing"}'))
    assert view.led == "processing" and view.state == "idle"
    assert harness.leds.patterns[-1] == "processing"


def test_control_own_state_messages_are_not_fed_back(harness: Harness) -> None:
    own = b'{"state":"processing","source":"satellite/sat1"}'
    harness.send(MqttMessage(STATE.format("s1"), own))
    assert harness.indicator.shown == []


def test_control_invalid_payloads_are_counted_and_change_nothing(harness: Harness) -> None:
    for payload in [b"\xff", b"[]", b'{"state": 3}', b"x" * 2000]:
        harness.send(MqttMessage(STATE.format("s1"), payload))
    assert harness.indicator.shown == [] and harness.leds.patterns == ["idle"]
    assert harness.controller.counters.invalid_messages == 4


def test_control_button_toggles_mute_persists_and_asks_the_pipeline(harness: Harness) -> None:
    harness.send(ButtonPressed())
    assert harness.saved == [True] and harness.controller.muted
    assert len(harness.requests) == 1
    harness.send(ButtonPressed())
    assert harness.saved == [True, False] and not harness.controller.muted
    assert len(harness.requests) == 2


def test_control_commands_mute_unmute_and_listen(harness: Harness) -> None:
    harness.send(
        MqttMessage(COMMAND, b'{"command":"mute"}'),
        MqttMessage(COMMAND, b'{"command":"mute"}'),
        MqttMessage(COMMAND, b'{"command":"listen"}'),
        MqttMessage(COMMAND, b'{"command":"unmute"}'),
    )
    assert harness.saved == [True, False]
    assert len(harness.requests) == 3


def test_control_session_events_set_state_and_counters(harness: Harness) -> None:
    harness.send(SessionEvent(WakeDetected("s1", "hey_jarvis", 0.9)))
    assert harness.send(SessionEvent(Listening("s1", "u1"))).state == "listening"
    view = harness.send(SessionEvent(Idle("s1", EndReason.FINAL)))
    assert view.state == "idle" and view.led == "idle"
    assert harness.controller.counters.wake_detections == 1
    assert harness.controller.counters.sessions == 1


def test_control_mute_event_shows_the_muted_state(harness: Harness) -> None:
    view = harness.send(SessionEvent(MuteChanged("m1", True)))
    assert view.state == "muted" and view.led == "muted" and harness.indicator.muted


def test_control_connection_changes_are_shown(harness: Harness) -> None:
    harness.send(ConnectionChanged(False))
    assert harness.indicator.offline
    harness.send(ConnectionChanged(True))
    assert not harness.indicator.offline


def test_control_keep_open_shows_attentive_without_follow_up_by_default(harness: Harness) -> None:
    harness.send(SessionEvent(Listening("s1", "u1")))
    harness.send(MqttMessage(HINT.format("s1"), b'{"keep_open": true}'))
    assert harness.indicator.shown[-1] == "attentive" and harness.requests == []


def test_control_keep_open_follows_up_own_sessions_when_enabled() -> None:
    h = Harness(follow_up=FollowUp(enabled=True, no_speech_timeout_s=3.0))
    h.send(SessionEvent(Listening("s1", "u1")))
    h.send(MqttMessage(HINT.format("other"), b'{"keep_open": true}'))
    assert h.requests == []
    h.send(MqttMessage(HINT.format("s1"), b'{"keep_open": true}'))
    assert len(h.requests) == 1


def test_control_starts_muted_when_the_store_says_so() -> None:
    h = Harness(muted=True)
    assert h.indicator.muted and len(h.requests) == 1
    assert h.views[0].state == "muted"


def test_control_thread_applies_submitted_items_in_order() -> None:
    changed = threading.Condition()
    views: list[RoomView] = []

    def on_change(view: RoomView, counters: Counters) -> None:
        with changed:
            views.append(view)
            changed.notify_all()

    controller = bare_controller(on_change=on_change)
    controller.start()
    try:
        controller.submit(MqttMessage(STATE.format("s1"), b'{"state":"responding"}'))
        with changed:
            assert changed.wait_for(lambda: views[-1].led == "responding", 3.0)
    finally:
        controller.close()


def test_control_microphone_fault_shows_error_and_reports_the_reason(harness: Harness) -> None:
    view = harness.send(SessionEvent(FaultChanged("f1", "no capture device matches 'usb'")))
    assert view.state == "error" and view.fault == "no capture device matches 'usb'"
    view = harness.send(SessionEvent(FaultChanged("f2", None)))
    assert view.state == "idle" and view.fault is None


def test_control_oversized_payloads_are_dropped_on_arrival_and_counted() -> None:
    controller = bare_controller(max_payload_bytes=1024)
    controller.submit(MqttMessage(STATE.format("s1"), b"x" * 5000))
    controller.close()  # the thread never ran: apply what was queued by hand
    queued = controller._queue.get_nowait()
    assert isinstance(queued, OversizedMessage) and queued.size == 5000
    controller.handle(queued)
    assert controller.counters.invalid_messages == 1
