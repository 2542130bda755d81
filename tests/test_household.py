"""One room answers: the decision rule, with plain values."""

from __future__ import annotations

import pytest

from satellite.mqtt.household import (
    TOLERANCE_EXTRA_MS,
    Claim,
    Decision,
    Household,
    Outcome,
    Verdict,
)

WINDOW = 200
T0 = 1_700_000_000_000  # epoch ms of our detection


def claim(who: str, level: float, score: float = 0.8, at: int = T0) -> Claim:
    return Claim(f"c-{who}-{at}", who, level, score, at)


def household(me: str = "a", *peers: str, group: str = "home") -> Household:
    h = Household(satellite_id=me, group=group, window_ms=WINDOW)
    for peer in peers:
        h.set_peer(peer, hears=True, group=group)
    return h


def everyone_decides(claims: list[Claim], offsets_ms: dict[str, int]) -> dict[str, Decision]:
    """Each satellite decides on its own claim, having heard all the others'; each clock is
    off by `offsets_ms` (its detected_at is stamped with its own clock)."""
    stamped = [Claim(c.claim_id, c.satellite_id, c.level_db, c.score,
                     c.detected_at + offsets_ms[c.satellite_id]) for c in claims]  # fmt: skip
    decisions = {}
    for own in stamped:
        others = [c.satellite_id for c in stamped if c is not own]
        h = household(own.satellite_id, *others)
        for other in stamped:
            h.heard_claim(other, "home")
        decisions[own.satellite_id] = h.decide(own)
    return decisions


@pytest.mark.parametrize(
    ("claims", "winner"),
    [
        ([claim("a", 20.0), claim("b", 26.0), claim("c", 14.0)], "b"),  # the loudest
        ([claim("a", 20.0, 0.7), claim("b", 20.0, 0.9), claim("c", 20.0, 0.8)], "b"),  # score
        ([claim("c", 20.0, 0.8), claim("b", 20.0, 0.8), claim("a", 20.0, 0.8)], "a"),  # id
    ],
    ids=["level", "then-score", "then-smallest-id"],
)
def test_every_satellite_picks_the_same_winner(claims: list[Claim], winner: str) -> None:
    decisions = everyone_decides(claims, {"a": 0, "b": 0, "c": 0})
    for who, decision in decisions.items():
        if who == winner:
            assert decision.outcome is Outcome.WON
        else:  # a loser waits for the winner to say it opened the session
            assert decision.outcome is None
            assert decision.awaited == {winner}


@pytest.mark.parametrize("offsets", [(0, 40, -40), (-60, 0, 60), (30, -30, 0)])
def test_clocks_tens_of_ms_apart_change_nothing(offsets: tuple[int, int, int]) -> None:
    # Detected 0-60 ms apart, clocks up to 60 ms off, loudest detecting last.
    claims = [claim("a", 14.0, at=T0), claim("b", 20.0, at=T0 + 30), claim("c", 26.0, at=T0 + 60)]
    decisions = everyone_decides(claims, dict(zip("abc", offsets, strict=True)))
    assert decisions["c"].outcome is Outcome.WON
    assert decisions["a"].awaited == decisions["b"].awaited == {"c"}


def test_a_louder_claim_of_another_utterance_does_not_count() -> None:
    h = household("a", "b")
    far = T0 - WINDOW - TOLERANCE_EXTRA_MS - 1
    h.heard_claim(claim("b", 40.0, at=far), "home")
    h.heard_claim(claim("b", 40.0, at=T0 + WINDOW + TOLERANCE_EXTRA_MS + 1), "home")
    decision = h.decide(claim("a", 10.0))
    assert decision.outcome is Outcome.WON
    assert len(decision.considered) == 1


def test_a_claim_heard_before_our_detection_counts() -> None:
    h = household("a", "b")
    h.heard_claim(claim("b", 30.0, at=T0 - 150), "home")  # its window still open at T0
    assert h.decide(claim("a", 10.0)).awaited == {"b"}


def test_a_peer_whose_window_closed_before_our_detection_decided_without_us() -> None:
    h = household("a", "b")
    # Quieter, but it decided (and answered) 300 ms before we even heard the wake word.
    h.heard_claim(claim("b", 5.0, at=T0 - WINDOW - 300), "home")
    decision = h.decide(claim("a", 30.0))
    assert decision.outcome is None and decision.awaited == {"b"}
    h.heard_verdict(Verdict("b", "won", "b", T0 - WINDOW - 300), "home")
    assert (h.decide(claim("a", 30.0)).outcome, h.decide(claim("a", 30.0)).winner) == (
        Outcome.LOST,
        "b",
    )


@pytest.mark.parametrize("outcome", ["won", "alone"])
def test_a_winners_result_settles_it_whatever_we_heard(outcome: str) -> None:
    h = household("a", "b")
    h.heard_verdict(Verdict("b", outcome, "b", T0 + 20), "home")
    decision = h.decide(claim("a", 60.0))
    assert (decision.outcome, decision.winner) == (Outcome.LOST, "b")


def test_a_peer_that_lost_is_out_of_the_running() -> None:
    h = household("a", "b", "c")
    h.heard_claim(claim("b", 30.0, at=T0 + 10), "home")
    h.heard_verdict(Verdict("b", "lost", "x", T0 + 10), "home")  # it saw someone we did not
    h.heard_claim(claim("c", 5.0, at=T0 + 20), "home")
    assert h.decide(claim("a", 10.0)).outcome is Outcome.WON


def test_an_unknown_outcome_settles_nothing() -> None:
    h = household("a", "b")
    h.heard_verdict(Verdict("b", "maybe", "b", T0), "home")
    assert h.decide(claim("a", 10.0)).outcome is Outcome.WON


def test_claims_of_other_groups_strangers_and_our_own_echo_are_ignored() -> None:
    h = household("a", "b")
    assert not h.heard_claim(claim("b", 50.0), "flat-2")
    assert not h.heard_claim(claim("a", 50.0), "home")  # ours, back from the broker
    assert h.heard_claim(claim("z", 50.0), "home")  # kept, but z is no peer online
    assert not h.heard_verdict(Verdict("b", "won", "b", T0), "flat-2")
    assert h.decide(claim("a", 10.0)).outcome is Outcome.WON


def test_ignored_peers_presumed_gone_no_longer_count() -> None:
    h = household("a", "b", "c")
    h.heard_claim(claim("b", 50.0), "home")
    h.heard_claim(claim("c", 30.0), "home")
    assert h.decide(claim("a", 10.0)).awaited == {"b"}
    assert h.decide(claim("a", 10.0), frozenset({"b"})).awaited == {"c"}
    assert h.decide(claim("a", 10.0), frozenset({"b", "c"})).outcome is Outcome.WON


def test_peers_are_the_online_unmuted_satellites_of_the_group() -> None:
    h = household("a")
    h.set_peer("b", hears=True, group="home")
    h.set_peer("c", hears=True, group="flat-2")
    h.set_peer("d", hears=True, group=None)  # arbitration off there: it never claims
    h.set_peer("a", hears=True, group="home")  # ourselves
    assert h.peers == {"b"}
    h.set_peer("b", hears=False, group="home")  # offline, its will, or muted
    assert h.peers == set()
    h.set_peer("b", hears=True, group="home")
    h.forget_peers()
    assert h.peers == set()
