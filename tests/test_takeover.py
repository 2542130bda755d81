"""TakeoverGuard and OwnStatus: the signs of a second connection with our client id (no broker)."""

from __future__ import annotations

import json
import random

import pytest

from satellite.mqtt.takeover import LongWait, Origin, OwnStatus, TakeoverGuard

ME = "11111111-1111-4111-8111-111111111111"
OTHER = "22222222-2222-4222-8222-222222222222"


def guard() -> TakeoverGuard:
    return TakeoverGuard(rng=random.Random(3))


def status(**fields: object) -> bytes:
    return json.dumps({"online": False, "satellite_id": "pi", **fields}).encode()


def connection(g: TakeoverGuard, at: float, lasting: float, retained: Origin) -> LongWait | None:
    """One connection accepted at `at` with `retained` handed over, closed `lasting` s later."""
    g.accepted(at)
    g.retained(retained)
    return g.lost(at + lasting)


def test_own_status_tells_ours_from_another_process_and_from_no_status() -> None:
    mine = OwnStatus(ME, "fix it")
    assert mine.origin(status(instance_id=ME, online=True)) is Origin.OURS
    assert mine.origin(status(instance_id=ME)) is Origin.OUR_WILL
    assert mine.origin(status(instance_id=OTHER, extra="ignored")) is Origin.OTHER
    assert mine.origin(status()) is Origin.OTHER  # a satellite from before instance_id
    for junk in (b"", b"{}", b"not json", b'{"check": true}', b"[1]"):
        assert mine.origin(junk) is Origin.UNKNOWN, junk


def test_another_status_on_the_first_connection_is_our_predecessor() -> None:
    g = guard()
    g.accepted(0.0)
    assert g.retained(Origin.OTHER) is None
    assert g.lost(1.0) is None, "a restart of our own process is no fight"


def test_another_status_after_a_reconnect_is_reported_once_and_backs_off() -> None:
    g = guard()
    assert connection(g, 0.0, 1.0, Origin.OURS) is None
    g.accepted(1.2)
    sign = g.retained(Origin.OTHER)
    assert sign is not None and "another satellite's status" in sign
    first = g.lost(2.2)
    assert first is not None and 24 <= first.wait_s <= 36
    assert first.report is None, "already reported when the status arrived"
    g.accepted(40.0)
    assert g.retained(Origin.OTHER) is None, "one ERROR per episode"
    second = g.lost(41.0)
    assert second is not None and 48 <= second.wait_s <= 72


def test_long_waits_double_up_to_ten_minutes() -> None:
    g = guard()
    connection(g, 0.0, 1.0, Origin.OURS)
    waits, at = [], 10.0
    for _ in range(8):
        backoff = connection(g, at, 1.0, Origin.OTHER)
        assert backoff is not None
        waits.append(backoff.wait_s)
        at += backoff.wait_s + 1.0
    steps = [30, 60, 120, 240, 480, 600, 600, 600]
    assert all(0.8 * step <= w <= 1.2 * step for step, w in zip(steps, waits, strict=True))


def test_short_connections_each_ended_with_our_will_are_a_client_id_taken_over() -> None:
    g = guard()
    # Each connection finds the will the broker published when it closed the one before.
    results = [connection(g, float(i), 0.5, Origin.OUR_WILL) for i in range(6)]
    assert results[:5] == [None] * 5, "the first connection and four kicks are not yet a streak"
    sixth = results[5]
    assert sixth is not None and 24 <= sixth.wait_s <= 36
    assert sixth.report is not None and "5 connections in a row within 3 s" in sixth.report
    seventh = connection(g, 40.0, 0.5, Origin.OUR_WILL)
    assert seventh is not None and seventh.report is None and 48 <= seventh.wait_s <= 72


@pytest.mark.parametrize("retained", [Origin.UNKNOWN, Origin.OURS])
def test_short_connections_without_our_will_are_broker_restarts(retained: Origin) -> None:
    # A broker without persistence forgets the status (no retained message: UNKNOWN here), and
    # one that went down cleanly may keep our last birth.
    g = guard()
    assert [connection(g, float(i), 0.5, retained) for i in range(20)] == [None] * 20


def test_a_failed_attempt_breaks_the_streak_as_a_broker_restart_does() -> None:
    g = guard()
    for i in range(10):
        # A persistent broker published our will on shutdown, and was still down on our retry.
        assert connection(g, float(i), 0.5, Origin.OUR_WILL) is None
        g.failed()


@pytest.mark.parametrize("lasting", [3.0, 60.0])
def test_a_connection_that_lasts_is_no_kick(lasting: float) -> None:
    g = guard()
    for i in range(10):
        assert connection(g, i * 100.0, lasting, Origin.OURS) is None


def test_fifteen_quiet_minutes_end_the_episode() -> None:
    g = guard()
    connection(g, 0.0, 1.0, Origin.OURS)
    assert connection(g, 2.0, 1.0, Origin.OTHER) is not None
    assert g.waits == 1
    assert connection(g, 40.0, 900.0, Origin.OTHER) is None
    assert g.waits == 0
    g.accepted(1000.0)
    assert g.retained(Origin.OTHER) is not None, "a new episode is reported again"
