"""One room answers: the arbiter's hold and release (the rule itself: tests/test_household.py)."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from satellite.core.session import (
    EndReason,
    Event,
    Idle,
    Interim,
    Listening,
    MuteChanged,
    WakeDetected,
)
from satellite.mqtt.arbitration import CONFIRM_EXTRA_MS, Identity, Message, WakeArbiter
from satellite.mqtt.contracts import PeerClaim, PeerResult, PeerStatus, WakeClaim, WakeResult
from satellite.mqtt.household import Outcome

WINDOW = 200
T0 = 1_700_000_000_000  # epoch ms of our detection


# --- the arbiter: hold, release, drop ------------------------------------------------------


@dataclass
class Timers:
    """A schedule for WakeArbiter that fires only when the test says so."""

    pending: list[tuple[float, Callable[[], None]]] = field(default_factory=list)

    def __call__(self, delay_s: float, fn: Callable[[], None]) -> Callable[[], None]:
        entry = (delay_s, fn)
        self.pending.append(entry)
        return lambda: self.pending.remove(entry) if entry in self.pending else None

    def fire(self) -> float:
        """Run the next timer; its delay."""
        delay, fn = self.pending.pop(0)
        fn()
        return delay


@dataclass
class Rig:
    """A WakeArbiter for satellite "a" with recording callbacks."""

    peers: tuple[str, ...] = ("b",)
    connected: bool = True
    delivered: list[Event] = field(default_factory=list)
    sent: list[Message] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)
    decided: list[Outcome] = field(default_factory=list)
    timers: Timers = field(default_factory=Timers)

    def __post_init__(self) -> None:
        self.arbiter = WakeArbiter(
            identity=Identity("a", "salon", "home"),
            enabled=True,
            window_ms=WINDOW,
            deliver=self.delivered.append,
            send=self.sent.append,
            abandon=self.abandoned.append,
            connected=lambda: self.connected,
            decided=self.decided.append,
            schedule=self.timers,
        )
        for peer in self.peers:
            self.arbiter.peer_status(peer, PeerStatus(online=True, satellite_id=peer, group="home"))

    def hear(self, *events: Event, at: int = T0) -> None:
        for event in events:
            self.arbiter.on_event(event, at)

    def peer_claims(self, who: str, level: float, at: int = T0) -> None:
        self.arbiter.claim_received(
            PeerClaim(
                claim_id=f"c-{who}", satellite_id=who, group="home", score=0.8, level_db=level,
                detected_at=at,
            )
        )  # fmt: skip

    def peer_decides(self, who: str, outcome: str, winner: str, at: int = T0) -> None:
        self.arbiter.result_received(
            PeerResult(
                claim_id=f"c-{who}", satellite_id=who, group="home", outcome=outcome,
                winner=winner, detected_at=at,
            )
        )  # fmt: skip

    def results(self) -> list[WakeResult]:
        return [m for m in self.sent if isinstance(m, WakeResult)]


WAKE = WakeDetected("s1", "hey_jarvis", 0.83, 23.04)
SESSION: list[Event] = [
    WAKE,
    Listening("s1", "u1"),
    Interim("s1", "u1", "turn on", 1),
]


def test_alone_the_session_opens_at_once_and_says_so() -> None:
    rig = Rig(peers=())
    rig.hear(*SESSION)
    assert rig.delivered == SESSION
    assert rig.timers.pending == []
    claim_message, result = rig.sent
    assert isinstance(claim_message, WakeClaim)
    assert (claim_message.level_db, claim_message.score, claim_message.detected_at) == (
        23.0,
        0.83,
        T0,
    )
    assert isinstance(result, WakeResult)
    assert (result.outcome, result.winner, result.claims) == (
        "alone",
        "a",
        [claim_message.claim_id],
    )
    assert rig.decided == []


def test_without_the_broker_it_opens_at_once_and_sends_nothing() -> None:
    rig = Rig(connected=False)
    rig.hear(*SESSION)
    assert rig.delivered == SESSION
    assert rig.sent == [] and rig.timers.pending == []


def test_with_a_peer_the_session_waits_the_window_then_goes_out_in_order() -> None:
    rig = Rig()
    rig.hear(*SESSION)
    assert rig.delivered == []
    assert [type(m) for m in rig.sent] == [WakeClaim]
    rig.peer_claims("b", 10.0, at=T0 + 40)  # quieter
    assert rig.timers.fire() == WINDOW / 1000
    assert rig.delivered == SESSION
    (result,) = rig.results()
    assert (result.outcome, result.winner, len(result.claims)) == ("won", "a", 2)
    rig.hear(Interim("s1", "u1", "turn on the", 2))  # after the release: at once
    assert rig.delivered[-1] == Interim("s1", "u1", "turn on the", 2)
    assert rig.decided == [Outcome.WON]


def test_a_lost_session_publishes_nothing_and_ends_without_a_final() -> None:
    rig = Rig()
    rig.peer_decides("b", "won", "b", at=T0 - 30)  # it detected first, and louder
    rig.peer_claims("b", 30.0, at=T0 - 30)
    rig.hear(*SESSION)
    rig.hear(MuteChanged("m1", True), at=T0 + 100)  # not the session's: goes on as usual
    rig.timers.fire()
    assert rig.delivered == [MuteChanged("m1", True)]
    assert rig.abandoned == ["s1"]
    (result,) = rig.results()
    assert (result.outcome, result.winner) == ("lost", "b")
    # What the machine still emits for that session before it ends it: dropped.
    rig.hear(Interim("s1", "u1", "turn on the", 2), Idle("s1", EndReason.LOST))
    assert rig.delivered == [MuteChanged("m1", True)]
    rig.hear(Listening("s2", "u2"))  # a listen command afterwards: never arbitrated
    assert rig.delivered[-1] == Listening("s2", "u2")
    assert rig.decided == [Outcome.LOST]


def test_a_session_that_ended_while_held_is_not_abandoned_again() -> None:
    rig = Rig()
    rig.peer_claims("b", 30.0)
    rig.peer_decides("b", "won", "b")
    rig.hear(*SESSION, Idle("s1", EndReason.NO_SPEECH))
    rig.timers.fire()
    assert rig.abandoned == [] and rig.delivered == []
    rig.hear(Listening("s2", "u2"))
    assert rig.delivered == [Listening("s2", "u2")]


def test_a_loser_waits_for_a_winner_that_detected_later() -> None:
    rig = Rig()
    rig.hear(*SESSION)
    rig.peer_claims("b", 30.0, at=T0 + 150)  # louder, its window ends 150 ms after ours
    rig.timers.fire()
    assert rig.delivered == [] and rig.results() == []
    rig.peer_decides("b", "won", "b", at=T0 + 150)  # settles it at once, before the timer
    assert rig.abandoned == ["s1"]
    assert rig.results()[0].outcome == "lost"
    assert rig.timers.pending == []


def test_a_peer_that_dies_between_claim_and_decision_changes_nothing_for_us(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rig = Rig()
    rig.hear(*SESSION)
    rig.peer_claims("b", 30.0)  # louder, then never a word again
    rig.timers.fire()
    assert rig.delivered == []
    with caplog.at_level(logging.WARNING, "satellite.mqtt.arbitration"):
        assert rig.timers.fire() == (WINDOW + CONFIRM_EXTRA_MS) / 1000
    assert "no result from b" in caplog.text
    assert rig.delivered == SESSION
    assert rig.results()[0].outcome == "won"


def test_a_peer_going_offline_while_awaited_settles_it_at_once() -> None:
    rig = Rig()
    rig.hear(*SESSION)
    rig.peer_claims("b", 30.0)
    rig.timers.fire()
    rig.arbiter.peer_status("b", PeerStatus(online=False, satellite_id="b"))  # its will
    assert rig.delivered == SESSION


def test_losing_the_broker_during_the_window_opens_the_session_alone() -> None:
    rig = Rig()
    rig.hear(*SESSION)
    rig.peer_claims("b", 30.0)
    rig.arbiter.connection(False)  # peers unknown now
    rig.timers.fire()
    assert rig.delivered == SESSION


def test_a_claim_from_another_group_or_a_stranger_changes_nothing() -> None:
    rig = Rig()
    rig.hear(*SESSION)
    rig.arbiter.claim_received(
        PeerClaim(claim_id="x", satellite_id="b", group="flat-2", score=1.0, level_db=90.0,
                  detected_at=T0)
    )  # fmt: skip
    rig.peer_claims("stranger", 90.0)  # no status online: no peer
    rig.timers.fire()
    assert rig.delivered == SESSION


def test_disabled_it_passes_everything_through_and_claims_nothing() -> None:
    rig = Rig()
    rig.arbiter.reconfigure(Identity("a", "salon", "home"), enabled=False, window_ms=WINDOW)
    rig.hear(*SESSION)
    assert rig.delivered == SESSION and rig.sent == []


def test_events_released_by_the_timer_and_later_ones_keep_their_order() -> None:
    """The pipeline thread emits interims without pause while a real timer releases."""
    delivered: list[Event] = []
    released = threading.Event()

    def deliver(event: Event) -> None:
        delivered.append(event)
        released.set()

    arbiter = WakeArbiter(
        identity=Identity("a", "salon", "home"),
        enabled=True,
        window_ms=50,
        deliver=deliver,
        send=lambda message: None,
        abandon=lambda session: None,
        connected=lambda: True,
    )
    arbiter.peer_status("b", PeerStatus(online=True, satellite_id="b", group="home"))
    events: list[Event] = [WAKE, Listening("s1", "u1")]
    sequence = itertools.count(1)
    arbiter.on_event(events[0], T0)
    arbiter.on_event(events[1], T0)
    deadline = time.monotonic() + 10.0
    while not released.is_set() or len(events) < 2000:
        assert time.monotonic() < deadline, "the timer never released the session"
        events.append(Interim("s1", "u1", "w", next(sequence)))
        arbiter.on_event(events[-1], T0)
    arbiter.close()
    assert delivered == events
