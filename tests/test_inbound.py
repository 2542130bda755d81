"""Inbound validation: every payload is checked; nothing raises."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from satellite.config import MqttSettings
from satellite.mqtt.inbound import (
    ClaimReceived,
    Cleared,
    CommandReceived,
    GatewayStateReceived,
    OverlayHintReceived,
    PeerStatusReceived,
    Rejected,
    ResultReceived,
    parse_inbound,
)
from satellite.mqtt.topics import Topics

TOPICS = Topics(room_id="salon", satellite_id="sat1", mqtt=MqttSettings())
STATE = "v1/voice_assistant/room/salon/session/s1/state"
HINT = "v1/voice_assistant/room/salon/session/s1/overlay_hint"
COMMAND = "v1/voice_assistant/room/salon/satellite/sat1/command"
LIMIT = 65536


def parse(topic: str, payload: bytes) -> object:
    return parse_inbound(topic, payload, topics=TOPICS, max_bytes=LIMIT)


def test_gateway_state_unknown_states_accepted_extra_fields_ignored() -> None:
    got = parse(STATE, b'{"state": "thinking_hard", "source": "gateway", "mood": 3}')
    assert isinstance(got, GatewayStateReceived)
    assert got.session_id == "s1" and got.message.state == "thinking_hard"


def test_overlay_hint_and_command_are_validated() -> None:
    hint = parse(HINT, b'{"keep_open": true}')
    assert isinstance(hint, OverlayHintReceived) and hint.message.keep_open
    command = parse(COMMAND, b'{"command": "mute"}')
    assert isinstance(command, CommandReceived) and command.message.command == "mute"
    assert isinstance(parse(COMMAND, b'{"command": "self_destruct"}'), Rejected)


def test_garbage_wrong_shapes_and_types_are_rejected_with_a_reason() -> None:
    for payload in [
        b"\xff\xfe\x00garbage",
        b"not json",
        b"[1, 2, 3]",
        b'"idle"',
        b'{"state": 42}',
        b'{"state": ""}',
        b'{"keep_open": "maybe"}',
        b"[" * 100000 + b"]" * 100000,
    ]:
        got = parse(STATE if b"keep" not in payload else HINT, payload)
        assert isinstance(got, Rejected) and got.reason, payload[:20]


def test_an_empty_payload_is_a_cleared_retained_message_not_a_rejection() -> None:
    for topic in (STATE, HINT, COMMAND, "v1/voice_assistant/room/salon/session/s1/x"):
        assert parse(topic, b"") == Cleared(topic)
    assert isinstance(parse(STATE, b" "), Rejected)


def test_oversized_payload_is_rejected_before_parsing() -> None:
    big = json.dumps({"state": "x" * (LIMIT + 1)}).encode()
    got = parse(STATE, big)
    assert isinstance(got, Rejected) and "exceeds" in got.reason


def test_topics_of_other_rooms_or_types_are_rejected() -> None:
    assert isinstance(parse("v1/voice_assistant/room/kitchen/session/s1/state", b"{}"), Rejected)
    interim = "v1/voice_assistant/room/salon/session/s1/transcript/interim"
    assert isinstance(parse(interim, b'{"text": "x"}'), Rejected)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([STATE, HINT, COMMAND]), st.binary(max_size=512))
def test_random_bytes_never_raise(topic: str, payload: bytes) -> None:
    parse(topic, payload)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([STATE, HINT, COMMAND]), json_values)
def test_random_json_never_raises(topic: str, value: object) -> None:
    parse(topic, json.dumps(value).encode())


def test_huge_integers_and_non_utf8_encodings_are_rejected() -> None:
    assert isinstance(parse(STATE, b'{"state": ' + b"9" * 5000 + b"}"), Rejected)
    assert isinstance(parse(STATE, '{"state": "idle"}'.encode("utf-16")), Rejected)


# --- the household: claims, results, statuses (arbitration) --------------------------------

GROUP_TOPICS = Topics(room_id="salon", satellite_id="sat1", mqtt=MqttSettings(), group="home")
CLAIM = "v1/voice_assistant/household/home/wake/claim"
RESULT = "v1/voice_assistant/household/home/wake/result"
PEER_STATUS = "v1/voice_assistant/room/kitchen/satellite/sat2/status"
A_CLAIM = {
    "claim_id": "c1", "satellite_id": "sat2", "room_id": "kitchen", "group": "home",
    "wake_word": "hey_jarvis", "score": 0.8, "level_db": 21.5, "detected_at": 1_700_000_000_000,
    "timestamp": 1_700_000_000_003, "message_id": "m1", "firmware": "next year's",
}  # fmt: skip


def parse_household(topic: str, payload: bytes) -> object:
    return parse_inbound(topic, payload, topics=GROUP_TOPICS, max_bytes=LIMIT)


def test_claims_results_and_peer_statuses_are_read_tolerantly() -> None:
    claim = parse_household(CLAIM, json.dumps(A_CLAIM).encode())
    assert isinstance(claim, ClaimReceived)
    assert (claim.message.satellite_id, claim.message.level_db) == ("sat2", 21.5)
    result = parse_household(
        RESULT,
        b'{"claim_id":"c1","satellite_id":"sat2","group":"home","outcome":"won",'
        b'"winner":"sat2","detected_at":1700000000000,"claims":["c1"],"new":1}',
    )
    assert isinstance(result, ResultReceived) and result.message.outcome == "won"
    status = parse_household(PEER_STATUS, b'{"online":true,"satellite_id":"x","group":"home"}')
    assert isinstance(status, PeerStatusReceived)
    assert status.satellite_id == "sat2"  # whose status it is: the topic says
    old = parse_household(PEER_STATUS, b'{"online":false,"room_id":"kitchen","satellite_id":"s"}')
    assert isinstance(old, PeerStatusReceived) and old.message.group is None


def test_garbage_claims_are_rejected_with_a_reason() -> None:
    for payload in [
        b"\xff garbage",
        b"[]",
        json.dumps({**A_CLAIM, "score": 7}).encode(),
        json.dumps({**A_CLAIM, "level_db": "loud"}).encode(),
        json.dumps({**A_CLAIM, "level_db": float("inf")}).encode(),  # json reads Infinity
        json.dumps({**A_CLAIM, "score": float("nan")}).encode(),
        json.dumps({k: v for k, v in A_CLAIM.items() if k != "detected_at"}).encode(),
        json.dumps({**A_CLAIM, "satellite_id": ""}).encode(),
        json.dumps({**A_CLAIM, "claim_id": "x" * 1000}).encode(),
    ]:
        got = parse_household(CLAIM, payload)
        assert isinstance(got, Rejected) and got.reason, payload[:40]


def test_without_a_group_household_topics_are_not_read() -> None:
    got = parse(CLAIM, json.dumps(A_CLAIM).encode())
    assert isinstance(got, Rejected) and "not a topic" in got.reason
