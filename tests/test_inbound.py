"""Inbound validation: every payload is checked; nothing raises."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from satellite.config import MqttSettings
from satellite.inbound import (
    Cleared,
    CommandReceived,
    GatewayStateReceived,
    OverlayHintReceived,
    Rejected,
    parse_inbound,
)
from satellite.topics import Topics

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
