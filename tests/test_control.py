"""The control thread's decisions, with a fake indicator and LED sink."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

from satellite.config import FollowupSettings, LedSettings, MqttSettings
from satellite.core.requests import Listen, SessionRequest, SetMuted
from satellite.core.session import (
    EndReason,
    FaultChanged,
    Idle,
    Listening,
    MuteChanged,
    WakeDetected,
)
from satellite.leds import build_indicator
from satellite.mqtt.contracts import PeerClaim, PeerResult, PeerStatus
from satellite.mqtt.topics import Topics
from satellite.runtime.control import Controller, Counters, Indicator, Item, RoomView
from satellite.runtime.handovers import (
    TICK,
    ArbitrationDecided,
    ButtonPressed,
    ConnectionChanged,
    MqttMessage,
    OversizedMessage,
    SessionEvent,
    Tick,
)

TOPICS = Topics(room_id="salon", satellite_id="sat1", mqtt=MqttSettings())
STATE = "v1/voice_assistant/room/salon/session/{}/state"
HINT = "v1/voice_assistant/room/salon/session/{}/overlay_hint"
COMMAND = "v1/voice_assistant/room/salon/satellite/sat1/command"
FOLLOW_UPS_ON = FollowupSettings(enabled=True)  # the room's defaults otherwise
LISTEN = Listen(session_id=None, no_speech_timeout_s=None)  # the `listen` command's request


@dataclass
class FakeIndicator:
    shown: list[str] = field(default_factory=list)
    muted: bool = False
    offline: bool = False
    faulted: bool = False

    def show(self, state: str) -> None:
        self.shown.append(state)

    def show_inbound(self, state: str, source: str | None = None) -> None:
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
        "follow_up": FollowupSettings(),
        "max_payload_bytes": MqttSettings().max_payload_bytes,
    }
    return Controller(**{**keywords, **overrides})


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class Harness:
    """A controller driven synchronously through `handle()` (no thread), on a fake clock.

    `views` are the published statuses; `send()` returns the latest view, published or not.
    With `real_leds`, the real Indicator chooses the patterns (on the same clock).
    """

    def __init__(
        self,
        *,
        muted: bool = False,
        follow_up: FollowupSettings | None = None,
        real_leds: bool = False,
    ) -> None:
        self.clock = FakeClock()
        self.indicator: Indicator = (
            build_indicator(LedSettings(), now=self.clock) if real_leds else FakeIndicator()
        )
        self.leds = FakeLeds()
        self.requests: list[SessionRequest] = []
        self.views: list[RoomView] = []
        self.published: list[tuple[RoomView, Counters]] = []
        self.saved: list[bool] = []
        self.controller = Controller(
            topics=TOPICS,
            source="satellite/sat1",
            indicator=self.indicator,
            leds=self.leds,
            request_session=self.requests.append,
            on_change=self._published,
            save_mute=self.saved.append,
            muted=muted,
            follow_up=follow_up or FollowupSettings(),
            max_payload_bytes=1024,
            now=self.clock,
        )

    def _published(self, view: RoomView, counters: Counters) -> None:
        self.views.append(view)
        self.published.append((view, Counters(**vars(counters))))

    def send(self, *items: Item | Tick) -> RoomView:
        for item in items:
            self.controller.handle(item)
        view = self.controller.view
        assert view is not None
        return view

    def fake(self) -> FakeIndicator:
        assert isinstance(self.indicator, FakeIndicator)
        return self.indicator


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
    assert harness.fake().shown == []


def test_control_invalid_payloads_are_counted_and_change_nothing(harness: Harness) -> None:
    for payload in [b"\xff", b"[]", b'{"state": 3}', b"x" * 2000]:
        harness.send(MqttMessage(STATE.format("s1"), payload))
    assert harness.fake().shown == [] and harness.leds.patterns == ["idle"]
    assert harness.controller.counters.invalid_messages == 4


def test_control_button_toggles_mute_persists_and_asks_the_pipeline(harness: Harness) -> None:
    harness.send(ButtonPressed())
    assert harness.saved == [True] and harness.controller.muted
    assert harness.requests == [SetMuted(True)]
    harness.send(ButtonPressed())
    assert harness.saved == [True, False] and not harness.controller.muted
    assert harness.requests == [SetMuted(True), SetMuted(False)]


def test_control_commands_mute_unmute_and_listen(harness: Harness) -> None:
    harness.send(
        MqttMessage(COMMAND, b'{"command":"mute"}'),
        MqttMessage(COMMAND, b'{"command":"mute"}'),
        MqttMessage(COMMAND, b'{"command":"listen"}'),
        MqttMessage(COMMAND, b'{"command":"unmute"}'),
    )
    assert harness.saved == [True, False]
    assert harness.requests == [SetMuted(True), LISTEN, SetMuted(False)]


@pytest.mark.parametrize("muted", [False, True])
def test_control_the_listen_command_asks_for_a_new_session_and_changes_no_mute(
    muted: bool,
) -> None:
    h = Harness(muted=muted)
    h.requests.clear()  # a muted start asks the pipeline to mute first
    view = h.send(MqttMessage(COMMAND, b'{"command":"listen"}'))
    assert h.requests == [LISTEN]  # the machine itself ignores it while muted
    assert h.saved == [] and h.controller.muted == muted and view.muted == muted


def test_control_session_events_set_state_and_counters(harness: Harness) -> None:
    harness.send(SessionEvent(WakeDetected("s1", "hey_jarvis", 0.9)))
    assert harness.send(SessionEvent(Listening("s1", "u1"))).state == "listening"
    view = harness.send(SessionEvent(Idle("s1", EndReason.FINAL)))
    assert view.state == "idle" and view.led == "idle"
    assert harness.controller.counters.wake_detections == 1
    assert harness.controller.counters.sessions == 1


def test_control_mute_event_shows_the_muted_state(harness: Harness) -> None:
    view = harness.send(SessionEvent(MuteChanged("m1", True)))
    assert view.state == "muted" and view.led == "muted" and harness.fake().muted


def test_control_connection_changes_are_shown(harness: Harness) -> None:
    harness.send(ConnectionChanged(False))
    assert harness.fake().offline
    harness.send(ConnectionChanged(True))
    assert not harness.fake().offline


def test_control_keep_open_shows_attentive_without_follow_up_by_default(harness: Harness) -> None:
    harness.send(SessionEvent(Listening("s1", "u1")))
    harness.send(MqttMessage(HINT.format("s1"), b'{"keep_open": true}'))
    assert harness.fake().shown[-1] == "attentive" and harness.requests == []


def test_control_keep_open_follows_up_own_sessions_when_enabled() -> None:
    h = Harness(follow_up=FollowupSettings(enabled=True, no_speech_timeout_s=3.0))
    h.send(SessionEvent(Listening("s1", "u1")))
    h.send(MqttMessage(HINT.format("other"), b'{"keep_open": true}'))
    assert h.requests == []
    h.send(MqttMessage(HINT.format("s1"), b'{"keep_open": true}'))
    assert h.requests == [Listen("s1", 3.0)]  # in the same session, with its own timeout


def test_control_keep_open_opens_nothing_while_muted() -> None:
    h = Harness(follow_up=FOLLOW_UPS_ON)
    h.send(SessionEvent(Listening("s1", "u1")), SessionEvent(Idle("s1", EndReason.FINAL)))
    h.send(MqttMessage(COMMAND, b'{"command":"mute"}'), keep_open("s1"))
    assert h.requests == [SetMuted(True)]


def test_control_starts_muted_when_the_store_says_so() -> None:
    h = Harness(muted=True)
    assert h.fake().muted and h.requests == [SetMuted(True)]
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


# --- LEDs tell the truth about this satellite's microphone (issue 12) ---

OTHER_SATELLITE = "satellite/sat2"


def state_from(state: str, source: str = OTHER_SATELLITE, session: str = "o1") -> MqttMessage:
    return MqttMessage(STATE.format(session), f'{{"state":"{state}","source":"{source}"}}'.encode())


def test_control_another_satellites_muted_never_shows_the_muted_pattern() -> None:
    h = Harness(real_leds=True)
    view = h.send(state_from("muted"), state_from("muted", source="gateway"))
    assert (view.led, view.muted, view.state) == ("idle", False, "idle")
    assert "muted" not in h.leds.patterns


def test_control_own_mute_shows_the_muted_pattern() -> None:
    h = Harness(real_leds=True)
    h.send(MqttMessage(COMMAND, b'{"command":"mute"}'))  # the pipeline then reports:
    view = h.send(SessionEvent(MuteChanged("m1", True)))
    assert (view.led, view.muted, view.state) == ("muted", True, "muted")
    assert h.leds.patterns[-1] == "muted"


def test_control_others_listening_or_wake_never_shows_our_listening_pattern() -> None:
    h = Harness(real_leds=True)
    view = h.send(state_from("wake_detected"), state_from("listening"))
    assert view.led == "idle" and h.leds.patterns == ["idle"]


def test_control_others_cannot_hide_our_listening_pattern_while_our_session_is_open() -> None:
    h = Harness(real_leds=True)
    h.send(SessionEvent(WakeDetected("s1", "hey_jarvis", 0.9)), SessionEvent(Listening("s1", "u1")))
    for message in (
        state_from("idle"),
        state_from("idle", source="gateway", session="s1"),
        state_from("processing", source="gateway"),
        MqttMessage(HINT.format("o1"), b'{"keep_open": false}'),
        state_from("muted"),
    ):
        assert h.send(message).led == "listening", message
    assert h.leds.patterns == ["idle", "wake_detected", "listening"]


def test_control_after_our_session_the_last_state_held_back_shows_within_its_timeout() -> None:
    h = Harness(real_leds=True)
    h.send(SessionEvent(Listening("s1", "u1")))
    h.send(state_from("processing", source="gateway", session="s1"))
    h.clock.advance(5.0)
    assert h.send(SessionEvent(Idle("s1", EndReason.FINAL))).led == "processing"
    h.clock.advance(25.0)  # processing lasts 30 s from its arrival, not from our idle
    assert h.send(TICK).led == "idle"


def test_control_after_our_session_others_states_drive_the_leds_again() -> None:
    h = Harness(real_leds=True)
    h.send(SessionEvent(Listening("s1", "u1")), SessionEvent(Idle("s1", EndReason.FINAL)))
    assert h.send(state_from("responding", source="gateway")).led == "responding"
    assert h.send(state_from("idle", source="gateway")).led == "idle"


# --- Only live commands act (issue 12) ---

RETAINED_MUTE = MqttMessage(COMMAND, b'{"command":"mute"}', retained=True)


def test_control_retained_commands_are_ignored_counted_and_warned_about_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="satellite.runtime.control")
    h = Harness()
    h.send(RETAINED_MUTE, MqttMessage(COMMAND, b'{"command":"listen"}', retained=True))
    h.send(RETAINED_MUTE, MqttMessage(COMMAND, b'{"command":"nonsense"}', retained=True))
    assert not h.controller.muted and h.saved == [] and h.requests == []
    assert h.controller.counters.retained_commands == 4
    assert h.controller.counters.invalid_messages == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [
        f"ignored a retained message on {COMMAND}: commands act only when sent live; clear it "
        f"by publishing an empty retained payload: mosquitto_pub -r -n -t {COMMAND}"
    ]


def test_control_live_commands_still_act_after_a_retained_one_was_ignored() -> None:
    h = Harness()
    h.send(RETAINED_MUTE, MqttMessage(COMMAND, b'{"command":"mute"}'))
    assert h.controller.muted and h.saved == [True] and h.requests == [SetMuted(True)]


def test_control_retained_states_and_hints_are_not_commands() -> None:
    h = Harness(real_leds=True)
    retained = MqttMessage(STATE.format("g1"), b'{"state":"processing"}', retained=True)
    assert h.send(retained).led == "processing"
    assert h.controller.counters.retained_commands == 0


@pytest.mark.parametrize("topic", [STATE.format("s1"), HINT.format("s1"), COMMAND])
@pytest.mark.parametrize("retained", [False, True])
def test_control_an_empty_payload_clears_a_retained_message_and_is_no_error(
    topic: str, retained: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="satellite.runtime.control")
    h = Harness(real_leds=True)
    view = h.send(MqttMessage(topic, b"", retained=retained))
    assert view.led == "idle" and h.requests == [] and h.saved == []
    assert h.controller.counters == Counters()
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]
    assert [r.getMessage() for r in caplog.records] == [
        f"empty payload on {topic} (a retained message cleared): ignored"
    ]


# --- Follow-ups per session capped (issue 12) ---


def keep_open(session: str) -> MqttMessage:
    return MqttMessage(HINT.format(session), b'{"keep_open": true}')


def test_control_follow_ups_stop_at_the_cap_and_say_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="satellite.runtime.follow_ups")
    h = Harness(
        follow_up=FollowupSettings(enabled=True, no_speech_timeout_s=3.0, max_per_session=2)
    )
    h.send(SessionEvent(Listening("s1", "u1")), SessionEvent(Idle("s1", EndReason.FINAL)))
    for utterance in ("u2", "u3"):
        h.send(keep_open("s1"))
        h.send(SessionEvent(Listening("s1", utterance)), SessionEvent(Idle("s1", EndReason.FINAL)))
    assert h.requests == [Listen("s1", 3.0)] * 2
    for _ in range(5):
        h.send(keep_open("s1"))
    assert h.requests == [Listen("s1", 3.0)] * 2
    capped = [r.getMessage() for r in caplog.records if "max_per_session" in r.getMessage()]
    assert capped == [
        "session s1 had 2 follow-ups (followup.max_per_session): keep_open no longer opens "
        "the microphone in it"
    ]
    assert h.controller.counters.sessions == 1


def test_control_follow_up_cap_is_per_session() -> None:
    h = Harness(follow_up=FollowupSettings(enabled=True, max_per_session=1))
    h.send(
        SessionEvent(Listening("s1", "u1")), keep_open("s1"), SessionEvent(Listening("s1", "u2"))
    )
    h.send(SessionEvent(Listening("s2", "u3")), keep_open("s1"))
    timeout = FOLLOW_UPS_ON.no_speech_timeout_s
    assert h.requests == [Listen("s1", timeout)]
    h.send(keep_open("s2"))
    assert h.requests == [Listen("s1", timeout), Listen("s2", timeout)]


# --- Status publications coalesced (issue 12) ---


def test_control_a_flood_of_states_changes_the_leds_at_once_but_the_status_twice_a_second() -> None:
    h = Harness(real_leds=True)
    states = ["processing", "responding"] * 1000 + ["error"]
    for state in states:  # 2,001 messages over 2 s: the queue would never run dry
        h.clock.advance(0.001)
        h.send(state_from(state, source="gateway"))
    assert len(h.leds.patterns) == 1 + len(states)  # idle, then every change at once
    assert len(h.views) <= 1 + 5  # construction, then at most one per 0.5 s of the flood
    h.clock.advance(0.5)
    view = h.send(TICK)  # nothing else arrives: the held-back change still goes out
    assert view.led == "error" and h.views[-1] == view


def test_control_a_change_after_a_quiet_half_second_is_published_at_once() -> None:
    h = Harness(real_leds=True)
    h.clock.advance(0.5)
    h.send(state_from("processing", source="gateway"))
    assert h.views[-1].led == "processing"
    h.clock.advance(0.1)
    h.send(state_from("responding", source="gateway"))
    assert h.views[-1].led == "processing"  # held back until 0.5 s after the last one
    h.clock.advance(0.3)
    h.send(TICK)
    assert h.views[-1].led == "processing"
    h.clock.advance(0.1)
    h.send(TICK)
    assert h.views[-1].led == "responding"
    assert len(h.views) == 3


def test_control_counter_changes_alone_are_published_once_a_second() -> None:
    h = Harness()
    h.clock.advance(5.0)
    h.send(MqttMessage(STATE.format("s1"), b"garbage"))
    h.clock.advance(0.9)
    h.send(MqttMessage(STATE.format("s1"), b"garbage"), TICK)
    assert len(h.published) == 1
    h.clock.advance(0.1)
    h.send(TICK)
    assert len(h.published) == 2 and h.published[-1][1].invalid_messages == 2


def test_control_the_first_change_after_the_birth_status_is_not_held_back() -> None:
    h = Harness(real_leds=True)
    view = h.send(SessionEvent(FaultChanged("f1", "no capture device matches 'usb'")))
    assert h.views == [RoomView("idle", False, "idle"), view] and view.state == "error"
    h.send(SessionEvent(FaultChanged("f2", None)))
    assert len(h.views) == 2  # the next one waits for STATUS_INTERVAL_S


# --- the household (arbitration) -------------------------------------------------------------

GROUP_TOPICS = Topics(room_id="salon", satellite_id="sat1", mqtt=MqttSettings(), group="home")
CLAIM = "v1/voice_assistant/household/home/wake/claim"
RESULT = "v1/voice_assistant/household/home/wake/result"
PEER_STATUS = "v1/voice_assistant/room/kitchen/satellite/sat2/status"
A_CLAIM = (
    b'{"claim_id":"c1","satellite_id":"sat2","group":"home","score":0.8,"level_db":20.0,'
    b'"detected_at":1700000000000}'
)
A_RESULT = (
    b'{"claim_id":"c1","satellite_id":"sat2","group":"home","outcome":"won","winner":"sat2",'
    b'"detected_at":1700000000000}'
)


@dataclass
class FakeHousehold:
    heard: list[tuple[str, object]] = field(default_factory=list)

    def claim_received(self, message: PeerClaim) -> None:
        self.heard.append(("claim", message.claim_id))

    def result_received(self, message: PeerResult) -> None:
        self.heard.append(("result", message.outcome))

    def peer_status(self, satellite_id: str, message: PeerStatus) -> None:
        self.heard.append(("status", (satellite_id, message.online)))

    def connection(self, connected: bool) -> None:
        self.heard.append(("connection", connected))


def test_control_hands_claims_results_statuses_and_the_connection_to_the_arbiter() -> None:
    household = FakeHousehold()
    controller = bare_controller(topics=GROUP_TOPICS, household=household)
    items: list[Item] = [
        MqttMessage(PEER_STATUS, b'{"online":true,"satellite_id":"sat2","group":"home"}', True),
        MqttMessage(CLAIM, A_CLAIM),
        MqttMessage(RESULT, A_RESULT),
        ConnectionChanged(False),
    ]
    for item in items:
        controller.handle(item)
    assert household.heard == [
        ("status", ("sat2", True)),
        ("claim", "c1"),
        ("result", "won"),
        ("connection", False),
    ]
    assert controller.counters.invalid_messages == 0


def test_control_garbage_and_retained_claims_never_reach_the_arbiter() -> None:
    household = FakeHousehold()
    controller = bare_controller(topics=GROUP_TOPICS, household=household)
    controller.handle(MqttMessage(CLAIM, b'{"claim_id": 1}'))
    controller.handle(MqttMessage(CLAIM, b"\x00garbage"))
    controller.handle(MqttMessage(CLAIM, A_CLAIM, retained=True))  # stale by nature
    controller.handle(MqttMessage(RESULT, A_RESULT, retained=True))
    assert household.heard == []
    assert controller.counters.invalid_messages == 2


def test_control_counts_arbitration_wins_and_losses(harness: Harness) -> None:
    harness.send(ArbitrationDecided(won=True), SessionEvent(WakeDetected("s1", "hey_jarvis", 0.9)))
    view = harness.send(ArbitrationDecided(won=False))
    counters = harness.controller.counters
    assert (counters.arbitration_wins, counters.arbitration_losses) == (1, 1)
    assert counters.wake_detections == 2  # the lost one was heard too
    assert counters.sessions == 0
    assert view.led == "wake_detected"  # a loss shows nothing
