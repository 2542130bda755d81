"""The rule of one room answering: who, of the satellites that heard a wake word, answers.

Plain values in, a decision out (no clock, no thread, no MQTT): every satellite of a group
applies it to the same claims and reaches the same answer. satellite.mqtt.arbitration runs
the exchange around it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from satellite.mqtt.contracts import ResultOutcome

# Claims of the same utterance: detected within the window plus this of each other. A room
# further away detects a frame or two (80 ms each) later, and a louder one earlier.
TOLERANCE_EXTRA_MS = 500
# Clocks of a household differ by tens of milliseconds (NTP): a peer "decided without us"
# only if its window closed this long before our detection.
CLOCK_SLACK_MS = 50
MEMORY = 64  # claims and results kept (seconds of a busy household)
SETTLED = ("won", "alone")  # outcomes of a satellite that opened its session


class Outcome(StrEnum):
    """What a satellite decided about its own claim."""

    WON = "won"
    LOST = "lost"
    ALONE = "alone"

    @property
    def wire(self) -> ResultOutcome:
        """The value in a WakeResult."""
        return _WIRE[self]


_WIRE: dict[Outcome, ResultOutcome] = {
    Outcome.WON: "won",
    Outcome.LOST: "lost",
    Outcome.ALONE: "alone",
}


@dataclass(frozen=True)
class Claim:
    """A detection as the rule sees it; every satellite ranks the same rounded numbers."""

    claim_id: str
    satellite_id: str
    level_db: float
    score: float
    detected_at: int  # epoch ms

    @property
    def rank(self) -> tuple[float, float, str]:
        """Smallest first: the loudest, then the highest score, then the smallest id."""
        return (-self.level_db, -self.score, self.satellite_id)


@dataclass(frozen=True)
class Verdict:
    """What a peer decided about its claim (its result)."""

    satellite_id: str
    outcome: str  # "won", "lost", "alone"; anything else settles nothing
    winner: str
    detected_at: int  # of the peer's claim


@dataclass(frozen=True)
class Decision:
    """The rule's answer: an outcome, or None while a peer's result is awaited."""

    outcome: Outcome | None
    winner: str | None
    considered: tuple[str, ...]  # claim ids, ours first
    awaited: frozenset[str] = frozenset()  # satellites whose result would settle it


class Household:
    """What this satellite knows of its arbitration group, and the rule. Not thread-safe."""

    def __init__(self, *, satellite_id: str, group: str, window_ms: int) -> None:
        self.satellite_id = satellite_id
        self.group = group
        self.window_ms = window_ms
        self._peers: set[str] = set()
        self._claims: deque[Claim] = deque(maxlen=MEMORY)
        self._verdicts: deque[Verdict] = deque(maxlen=MEMORY)

    @property
    def peers(self) -> frozenset[str]:
        """The other satellites of the group that are online and can hear."""
        return frozenset(self._peers)

    def set_peer(self, satellite_id: str, *, hears: bool, group: str | None) -> None:
        """A status: a peer if it is online, unmuted and in our group; else not (any more)."""
        if satellite_id == self.satellite_id:
            return
        if hears and group == self.group:
            self._peers.add(satellite_id)
        else:
            self._peers.discard(satellite_id)

    def forget_peers(self) -> None:
        """The broker connection went: the retained statuses tell again on reconnecting."""
        self._peers.clear()

    def heard_claim(self, claim: Claim, group: str) -> bool:
        """Keep a peer's claim for the decisions to come; False when it is none of ours."""
        if group != self.group or claim.satellite_id == self.satellite_id:
            return False
        self._claims.append(claim)
        return True

    def heard_verdict(self, verdict: Verdict, group: str) -> bool:
        """Keep a peer's result; False when it is none of ours."""
        if group != self.group or verdict.satellite_id == self.satellite_id:
            return False
        self._verdicts.append(verdict)
        return True

    def decide(self, own: Claim, ignored: frozenset[str] = frozenset()) -> Decision:
        """Who answers the utterance of `own`, from what is known now; `ignored`: peers that
        never announced a decision they owed (presumed gone)."""
        claims = self._claims_of(own, ignored)
        considered = (own.claim_id, *(c.claim_id for c in claims))
        verdicts = [v for v in self._verdicts if self._same(own, v.detected_at)]
        settled = next((v for v in verdicts if v.outcome in SETTLED), None)
        if settled is not None:
            return Decision(Outcome.LOST, settled.satellite_id, considered)
        gave_up = {v.satellite_id for v in verdicts if v.outcome == Outcome.LOST}
        contenders = [c for c in claims if c.satellite_id not in gave_up]
        early = frozenset(c.satellite_id for c in contenders if self._decided_before(c, own))
        best = min([own, *contenders], key=lambda c: c.rank)
        if best is own and not early:
            return Decision(Outcome.WON, own.satellite_id, considered)
        return Decision(None, None, considered, early or frozenset({best.satellite_id}))

    def _claims_of(self, own: Claim, ignored: frozenset[str]) -> list[Claim]:
        """Per peer online, its claim nearest ours of those of the same utterance."""
        nearest: dict[str, Claim] = {}
        for claim in self._claims:
            who = claim.satellite_id
            if who not in self._peers or who in ignored or not self._same(own, claim.detected_at):
                continue
            known = nearest.get(who)
            if known is None or _gap(claim, own) < _gap(known, own):
                nearest[who] = claim
        return list(nearest.values())

    def _same(self, own: Claim, detected_at: int) -> bool:
        return abs(detected_at - own.detected_at) <= self.window_ms + TOLERANCE_EXTRA_MS

    def _decided_before(self, claim: Claim, own: Claim) -> bool:
        """Whether `claim`'s window closed before our detection: it decided without us."""
        return claim.detected_at + self.window_ms + CLOCK_SLACK_MS < own.detected_at


def _gap(claim: Claim, own: Claim) -> int:
    return abs(claim.detected_at - own.detected_at)
