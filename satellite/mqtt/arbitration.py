"""One room answers: the satellites that heard a wake word pick, among themselves, who answers.

The exchange, on the group's household topics (satellite.mqtt.topics.HouseholdTopic):

1. On a detection a satellite publishes its claim at once: its `level_db` (how far the wake
   word stood over its room's noise floor), `score`, and `detected_at` (epoch ms).
2. With no peer online in its group (the retained statuses say who is), or no broker, it
   opens its session at once, as without arbitration (`wake_detected` goes out first, then
   the claim and its result `alone`, for dashboards and for a peer that detects later).
3. Otherwise it holds the new session's events for `window_ms` while the machine keeps
   listening (no audio is lost), and collects the peers' claims of the same utterance: those
   detected within the window + TOLERANCE_EXTRA_MS of its own, before it or after. Then each
   satellite applies the same rule to the same claims: the highest `level_db`, then the
   highest `score`, then the smallest `satellite_id`.
4. The winner releases the held events (`wake_detected` goes out `window_ms` late) and
   publishes its result `won`. A loser drops them, ends the utterance without a final and
   publishes `lost`.

Sessions are never split: a winner's result seen before deciding settles it (the winner has
opened its session), and so does a claim from a peer whose window closed before our detection
(it decided without us). A loser waits for the winner's result; a winner that never announces
itself (it died between claim and decision) is dropped after CONFIRM_EXTRA_MS beyond one more
window, and the others decide again without it.

The rule (plain values in, a decision out) is satellite.mqtt.household; `WakeArbiter` here
holds the events and runs the decision on a timer thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from satellite.core.ids import new_id, now_ms
from satellite.core.session import Event, Idle, WakeDetected
from satellite.mqtt.contracts import (
    PeerClaim,
    PeerResult,
    PeerStatus,
    WakeClaim,
    WakeResult,
)
from satellite.mqtt.household import Claim, Decision, Household, Outcome, Verdict

log = logging.getLogger(__name__)

# How long past a second window a loser waits for the winner's result before deciding again
# without it: the winner may have detected up to one window after us.
CONFIRM_EXTRA_MS = 300
LEVEL_BOUND_DB = 200.0  # the contract's bounds of level_db


@dataclass(frozen=True)
class Identity:
    """Who claims: this satellite, its room and its arbitration group."""

    satellite_id: str
    room_id: str
    group: str


@dataclass
class _Hold:
    """A new session held back while the group decides, and every event since (with when
    its audio was read)."""

    claim: Claim
    session_id: str
    events: list[tuple[Event, int]]
    token: int
    ignored: frozenset[str] = frozenset()
    confirming: bool = False  # the window is over; waiting for a peer's result


Message = WakeClaim | WakeResult
Schedule = Callable[[float, Callable[[], None]], Callable[[], None]]  # delay, fn -> cancel


def start_timer(delay_s: float, fn: Callable[[], None]) -> Callable[[], None]:
    """Run `fn` on a timer thread after `delay_s`; returns its cancel."""
    timer = threading.Timer(delay_s, fn)
    timer.name = "arbitration"
    timer.daemon = True  # a window never holds up the process's exit
    timer.start()
    return timer.cancel


class WakeArbiter:
    """Holds a new session's events while the group decides (see the module docstring).

    Threads: `on_event` runs on the pipeline thread; `claim_received`, `result_received`,
    `peer_status` and `connection` on the control thread; the decision on a timer thread
    (`schedule`) when the window, or the wait for a winner's result, ends. One lock orders
    them all, and `deliver` is only called under it, so the events a timer releases and
    those the pipeline emits after them go out in the machine's order.
    """

    def __init__(
        self,
        *,
        identity: Identity,
        enabled: bool,
        window_ms: int,
        deliver: Callable[[Event], None],
        send: Callable[[Message], None],
        abandon: Callable[[str], None],
        connected: Callable[[], bool],
        decided: Callable[[Outcome], None] = lambda outcome: None,
        schedule: Schedule = start_timer,
    ) -> None:
        self._deliver = deliver
        self._send = send
        self._abandon = abandon
        self._connected = connected
        self._decided = decided
        self._schedule = schedule
        self._lock = threading.Lock()
        self._hold: _Hold | None = None
        self._cancel: Callable[[], None] = lambda: None
        self._tokens = 0
        self._dropping: str | None = None  # a lost session whose last events may still come
        self._closed = False
        self.identity = identity
        self.enabled = enabled
        self.household = Household(
            satellite_id=identity.satellite_id, group=identity.group, window_ms=window_ms
        )

    def reconfigure(self, identity: Identity, *, enabled: bool, window_ms: int) -> None:
        """New settings from a reload; a decision under way finishes with the old ones."""
        with self._lock:
            if identity != self.identity:
                self.household = Household(
                    satellite_id=identity.satellite_id, group=identity.group, window_ms=window_ms
                )
            self.identity, self.enabled = identity, enabled
            self.household.window_ms = window_ms

    # -- the pipeline thread ----------------------------------------------------------------

    def on_event(self, event: Event, heard_at_ms: int) -> None:
        """Deliver a session event now, or hold it; `heard_at_ms`: when its audio was read."""
        with self._lock:
            if not self._closed:
                self._route(event, heard_at_ms)

    def _route(self, event: Event, heard_at_ms: int) -> None:
        # Called with the lock held, from the pipeline thread or when a hold ends.
        if self._hold is not None:
            self._hold.events.append((event, heard_at_ms))
        elif event.session_id == self._dropping:
            if isinstance(event, Idle):
                self._dropping = None
        elif isinstance(event, WakeDetected) and self.enabled:
            self._claim(event, heard_at_ms)
        else:
            self._deliver(event)

    def _claim(self, wake: WakeDetected, heard_at_ms: int) -> None:
        identity = self.identity
        claim = Claim(
            new_id(),
            identity.satellite_id,
            round(max(-LEVEL_BOUND_DB, min(LEVEL_BOUND_DB, wake.level_db)), 1),
            round(min(1.0, max(0.0, wake.score)), 4),
            heard_at_ms,
        )
        connected = self._connected()
        if not connected or not self.household.peers:
            # wake_detected first: alone, the claim is only news for dashboards and late peers.
            self._deliver(wake)
            if connected:
                self._send(self._claim_message(claim, wake.wake_word))
                self._send(self._result(claim, Outcome.ALONE, claim.satellite_id, ()))
            why = "no peer online in group" if connected else "no broker to reach group"
            log.debug("wake word: %s %s; not waiting", why, identity.group)
            return
        self._send(self._claim_message(claim, wake.wake_word))
        self._tokens += 1
        self._hold = _Hold(claim, wake.session_id, [(wake, heard_at_ms)], self._tokens)
        self._wait(self.household.window_ms, self._tokens, timed_out=False)

    # -- the control thread -----------------------------------------------------------------

    def claim_received(self, message: PeerClaim) -> None:
        """A claim on the group's topic (ours come back too, and are ignored)."""
        claim = Claim(
            message.claim_id,
            message.satellite_id,
            message.level_db,
            message.score,
            message.detected_at,
        )
        with self._lock:
            if not self.household.heard_claim(claim, message.group):
                log.debug("ignored a claim by %s in group %s", claim.satellite_id, message.group)

    def result_received(self, message: PeerResult) -> None:
        """A result on the group's topic: it may settle a decision that waits for it."""
        verdict = Verdict(
            message.satellite_id, message.outcome, message.winner, message.detected_at
        )
        with self._lock:
            if self.household.heard_verdict(verdict, message.group):
                self._recheck()

    def peer_status(self, satellite_id: str, message: PeerStatus) -> None:
        """A satellite's status (from its topic): whether it is a peer that can claim."""
        hears = message.online and not message.muted
        with self._lock:
            self.household.set_peer(satellite_id, hears=hears, group=message.group)
            if not hears:
                self._recheck()  # a winner that went offline will announce nothing

    def connection(self, connected: bool) -> None:
        """The broker connection changed; without it the peers are unknown."""
        if not connected:
            with self._lock:
                self.household.forget_peers()
                self._recheck()

    # -- the timer thread, and the checks above ---------------------------------------------

    def _wait(self, delay_ms: float, token: int, *, timed_out: bool) -> None:
        self._cancel = self._schedule(delay_ms / 1000, lambda: self._expire(token, timed_out))

    def _expire(self, token: int, timed_out: bool) -> None:
        with self._lock:
            hold = self._hold
            if hold is not None and hold.token == token and not self._closed:
                self._settle(hold, timed_out=timed_out)

    def _recheck(self) -> None:
        # Called with the lock held. During the window, claims may still come: wait for it.
        hold = self._hold
        if hold is not None and hold.confirming:
            self._settle(hold, timed_out=False)

    def _settle(self, hold: _Hold, *, timed_out: bool) -> None:
        decision = self.household.decide(hold.claim, hold.ignored)
        if decision.outcome is None and timed_out:
            log.warning(
                "wake word: no result from %s; deciding without them",
                ", ".join(sorted(decision.awaited)),
            )
            hold.ignored |= decision.awaited
            decision = self.household.decide(hold.claim, hold.ignored)
        if decision.outcome is not None:
            self._finish(hold, decision)
        elif timed_out or not hold.confirming:
            hold.confirming = True
            wait = self.household.window_ms + CONFIRM_EXTRA_MS
            self._wait(wait, hold.token, timed_out=True)

    def _finish(self, hold: _Hold, decision: Decision) -> None:
        self._hold = None
        self._cancel()
        outcome, winner = decision.outcome, decision.winner
        assert outcome is not None and winner is not None
        self._send(self._result(hold.claim, outcome, winner, decision.considered))
        claims = len(decision.considered)
        if outcome is Outcome.WON:
            log.info(
                "wake word answered here: %.1f dB over the floor, the best of %d claims",
                hold.claim.level_db,
                claims,
            )
        else:
            log.info(
                "wake word answered by %s (heard here at %.1f dB, %d claims): no session here",
                winner,
                hold.claim.level_db,
                claims,
            )
            self._end_lost(hold)
        for event, heard_at_ms in hold.events:
            if event.session_id != hold.session_id:
                self._route(event, heard_at_ms)  # a mute, a fault: they go on as usual
            elif outcome is Outcome.WON:
                self._deliver(event)
        self._decided(outcome)

    def _end_lost(self, hold: _Hold) -> None:
        """The lost session's utterance ends in the machine, and what it still emits is dropped."""
        session = hold.session_id
        if not any(isinstance(e, Idle) and e.session_id == session for e, _ in hold.events):
            self._dropping = session
            self._abandon(session)

    def _claim_message(self, claim: Claim, wake_word: str) -> WakeClaim:
        identity = self.identity
        return WakeClaim(
            claim_id=claim.claim_id,
            satellite_id=claim.satellite_id,
            room_id=identity.room_id,
            group=identity.group,
            wake_word=wake_word,
            score=claim.score,
            level_db=claim.level_db,
            detected_at=claim.detected_at,
            timestamp=now_ms(),
            message_id=new_id(),
        )

    def _result(
        self, claim: Claim, outcome: Outcome, winner: str, considered: tuple[str, ...]
    ) -> WakeResult:
        identity = self.identity
        return WakeResult(
            claim_id=claim.claim_id,
            satellite_id=claim.satellite_id,
            room_id=identity.room_id,
            group=identity.group,
            outcome=outcome.wire,
            winner=winner,
            claims=list(considered or (claim.claim_id,)),
            detected_at=claim.detected_at,
            timestamp=now_ms(),
            message_id=new_id(),
        )

    def close(self) -> None:
        """Stop: a held session is dropped, no timer fires any more; idempotent."""
        with self._lock:
            self._closed = True
            self._hold = None
            self._cancel()
