"""The payload models: strict outbound, tolerant inbound, JSON Schemas that real payloads meet."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from satellite.config import ArbitrationSettings, MqttSettings, Settings
from satellite.core.ids import new_id, now_ms
from satellite.core.session import (
    EndReason,
    Final,
    Idle,
    Interim,
    Listening,
    Transcript,
    WakeDetected,
)
from satellite.core.utterance import TimedWord
from satellite.mqtt.arbitration import Identity, WakeArbiter
from satellite.mqtt.contracts import (
    Command,
    GatewayState,
    OverlayHint,
    PeerClaim,
    PeerResult,
    PeerStatus,
    StateMessage,
    StatusMessage,
    TranscriptFinal,
    TranscriptInterim,
    WakeClaim,
    WakeResult,
)
from satellite.mqtt.outbound import Outbox, Outgoing, build_outbox
from satellite.mqtt.schemas import SCHEMA_MODELS, write_schemas
from satellite.mqtt.topics import Topics, TopicType

SID = "3f2b9c1e-8d4a-4e2f-9a6b-1c2d3e4f5a6b"
UTT = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
SCHEMA_FOR = {
    TopicType.STATE: "state",
    TopicType.INTERIM: "transcript_interim",
    TopicType.FINAL: "transcript_final",
}


def state(**fields: Any) -> StateMessage:
    base: dict[str, Any] = {
        "state": "listening",
        "timestamp": now_ms(),
        "message_id": new_id(),
        "room_id": "salon",
        "session_id": SID,
        "source": "satellite/pi-salon",
    }
    return StateMessage(**(base | fields))


def final(**fields: Any) -> TranscriptFinal:
    base: dict[str, Any] = {
        "text": "turn on the kitchen lights",
        "confidence": 0.9,
        "timestamp": now_ms(),
        "message_id": new_id(),
        "utt_id": UTT,
    }
    return TranscriptFinal(**(base | fields))


def outbox(**mqtt: Any) -> Outbox:
    topics = Topics(room_id="salon", satellite_id="pi-salon", mqtt=MqttSettings(**mqtt))
    return Outbox(room_id="salon", topics=topics)


def session_events() -> list[WakeDetected | Listening | Interim | Final | Idle]:
    words = (
        TimedWord("turn", 0.1, 0.3, 1.0),
        TimedWord("on", 0.3, 0.4, 0.95),
        TimedWord("the", 0.4, 0.5, 1.0),
        TimedWord("kitchen", 0.5, 0.9, 0.9),
        TimedWord("lights", 0.9, 1.3, 0.88),
    )
    return [
        WakeDetected(SID, "hey_jarvis", 0.87),
        Listening(SID, UTT),
        Interim(SID, UTT, "turn on", 1),
        Interim(SID, UTT, "turn on the kitchen", 2),
        Final(SID, UTT, Transcript("turn on the kitchen lights", 0.93, words)),
        Idle(SID, EndReason.FINAL),
    ]


def published(box: Outbox) -> list[Outgoing]:
    return [msg for event in session_events() for msg in box.messages(event)]


def validator(schemas: Path, name: str) -> Any:
    schema = json.loads((schemas / f"{name}.schema.json").read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_wake_detected_requires_wake_word_and_score() -> None:
    with pytest.raises(ValidationError, match="wake_word and score"):
        state(state="wake_detected")
    with pytest.raises(ValidationError, match="wake_word and score"):
        state(state="wake_detected", wake_word="hey_jarvis")
    with pytest.raises(ValidationError, match="wake_word and score"):
        state(state="wake_detected", score=0.8)
    assert state(state="wake_detected", wake_word="hey_jarvis", score=0.8).score == 0.8


@pytest.mark.parametrize("name", ["idle", "listening", "muted", "error"])
def test_wake_fields_forbidden_on_other_states(name: str) -> None:
    with pytest.raises(ValidationError, match="wake_word and score"):
        state(state=name, wake_word="hey_jarvis", score=0.8)
    with pytest.raises(ValidationError, match="wake_word and score"):
        state(state=name, score=0.8)
    assert state(state=name).state == name


def test_outbound_state_rejects_unknown_state() -> None:
    with pytest.raises(ValidationError):
        state(state="processing")


def status_fields(**fields: Any) -> dict[str, Any]:
    base = {"online": True, "room_id": "salon", "satellite_id": "pi", "timestamp": now_ms()}
    return base | {"instance_id": new_id(), "since": now_ms() - 5000} | fields


def test_the_last_will_carries_no_timestamp_but_the_run_it_ends() -> None:
    will = StatusMessage(**status_fields(online=False, timestamp=None))
    assert set(json.loads(will.to_json())) == {
        "online", "room_id", "satellite_id", "instance_id", "since"
    }  # fmt: skip


def test_an_online_status_is_always_stamped() -> None:
    with pytest.raises(ValidationError, match="timestamp"):
        StatusMessage(**status_fields(timestamp=None))
    with pytest.raises(ValidationError):
        StatusMessage(**status_fields(since=None))


def test_status_schema_says_what_timestamp_and_since_mean_in_the_will() -> None:
    fields = StatusMessage.model_json_schema()["properties"]
    assert "last will" in fields["timestamp"]["description"]
    assert "time of arrival" in fields["timestamp"]["description"]
    assert "started" in fields["since"]["description"]
    assert "last will" in fields["since"]["description"]
    assert "satellite_id" in fields["instance_id"]["description"]


@pytest.mark.parametrize("name", ["state", "transcript_interim", "transcript_final"])
def test_message_id_schema_tells_consumers_to_de_duplicate(name: str) -> None:
    description = SCHEMA_MODELS[name].model_json_schema()["properties"]["message_id"]["description"]
    assert "at-least-once" in description and "de-duplicate" in description


def test_wake_score_must_be_within_0_1() -> None:
    with pytest.raises(ValidationError):
        state(state="wake_detected", wake_word="hey_jarvis", score=1.5)


@pytest.mark.parametrize(
    ("build", "extra"),
    [
        (state, {"colour": "red"}),
        (final, {"language": "en"}),
        (
            lambda **kw: TranscriptInterim(
                text="turn", sequence=1, timestamp=0, message_id="m", utt_id=UTT, **kw
            ),
            {"partial": True},
        ),
        (
            lambda **kw: StatusMessage(**(status_fields() | kw)),
            {"cpu": 3},
        ),
    ],
)
def test_outbound_models_forbid_extra_fields(build: Any, extra: dict[str, Any]) -> None:
    build()
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        build(**extra)


def test_interim_sequence_starts_at_one() -> None:
    with pytest.raises(ValidationError):
        TranscriptInterim(text="turn", sequence=0, timestamp=0, message_id="m", utt_id=UTT)


def test_gateway_state_accepts_unknown_states_and_ignores_extras() -> None:
    msg = GatewayState.model_validate_json(
        json.dumps({"state": "thinking_hard", "source": "gateway", "mood": "cheerful"})
    )
    assert msg.state == "thinking_hard"
    assert msg.source == "gateway"
    assert not hasattr(msg, "mood")
    assert "mood" not in msg.model_dump()


def test_gateway_state_still_needs_a_state() -> None:
    with pytest.raises(ValidationError):
        GatewayState.model_validate({"source": "gateway"})
    with pytest.raises(ValidationError):
        GatewayState.model_validate({"state": ""})


def test_overlay_hint_is_tolerant() -> None:
    assert OverlayHint.model_validate({"keep_open": True, "ttl": 5}).keep_open is True
    assert OverlayHint.model_validate({}).keep_open is False


def test_command_accepts_known_commands_only() -> None:
    assert Command.model_validate({"command": "mute", "by": "dashboard"}).command == "mute"
    with pytest.raises(ValidationError):
        Command.model_validate({"command": "reboot"})


def test_final_rejects_empty_text() -> None:
    with pytest.raises(ValidationError):
        final(text="")


@pytest.mark.parametrize("confidence", [-0.01, 1.01])
def test_final_rejects_confidence_outside_0_1(confidence: float) -> None:
    with pytest.raises(ValidationError):
        final(confidence=confidence)


@pytest.mark.parametrize("confidence", [0.0, 1.0])
def test_final_accepts_confidence_bounds(confidence: float) -> None:
    assert final(confidence=confidence).confidence == confidence


def test_to_json_omits_none_fields() -> None:
    payload = json.loads(state(state="idle").to_json())
    assert "wake_word" not in payload
    assert "score" not in payload
    assert set(payload) == {"state", "timestamp", "message_id", "room_id", "session_id", "source"}
    assert "words" not in json.loads(final().to_json())


def test_to_json_is_bytes_and_keeps_set_fields() -> None:
    wire = state(state="wake_detected", wake_word="hey_jarvis", score=0.8).to_json()
    assert isinstance(wire, bytes)
    payload = json.loads(wire)
    assert payload["wake_word"] == "hey_jarvis"
    assert payload["score"] == 0.8


def test_write_schemas_writes_one_valid_schema_per_model(tmp_path: Path) -> None:
    written = write_schemas(tmp_path / "schemas")
    assert sorted(p.name for p in written) == sorted(f"{n}.schema.json" for n in SCHEMA_MODELS)
    for path in written:
        assert path.exists()
        validator(path.parent, path.name.removesuffix(".schema.json"))


def test_outbound_schemas_forbid_extra_fields(tmp_path: Path) -> None:
    write_schemas(tmp_path)
    payload = json.loads(state(state="idle").to_json()) | {"colour": "red"}
    assert not validator(tmp_path, "state").is_valid(payload)


def test_real_payloads_validate_against_their_schemas(tmp_path: Path) -> None:
    write_schemas(tmp_path)
    messages = published(outbox())
    assert [m.topic_type for m in messages] == [
        TopicType.STATE,
        TopicType.STATE,
        TopicType.INTERIM,
        TopicType.INTERIM,
        TopicType.FINAL,
        TopicType.STATE,
    ]
    for msg in messages:
        payload = json.loads(msg.message.to_json())
        validator(tmp_path, SCHEMA_FOR[msg.topic_type]).validate(payload)


def test_real_payload_fields() -> None:
    wake, listening, interim1, interim2, final_msg, idle = (
        json.loads(m.message.to_json()) for m in published(outbox())
    )
    assert wake["state"] == "wake_detected"
    assert (wake["wake_word"], wake["score"]) == ("hey_jarvis", 0.87)
    assert listening["state"] == "listening"
    assert "wake_word" not in listening
    assert idle["state"] == "idle"
    for msg in (wake, listening, idle):
        assert (msg["room_id"], msg["session_id"]) == ("salon", SID)
        assert msg["source"] == "satellite/pi-salon"
    assert [interim1["sequence"], interim2["sequence"]] == [1, 2]
    assert interim1["utt_id"] == interim2["utt_id"] == final_msg["utt_id"] == UTT
    assert final_msg["text"] == "turn on the kitchen lights"
    assert final_msg["confidence"] == 0.93
    assert [w["word"] for w in final_msg["words"]] == ["turn", "on", "the", "kitchen", "lights"]


def test_real_payloads_are_addressed_with_their_qos() -> None:
    messages = published(outbox())
    for msg in messages:
        assert msg.topic == f"v1/voice_assistant/room/salon/session/{SID}/{msg.topic_type}"
    assert [m.qos for m in messages] == [1, 1, 0, 0, 1, 1]


def test_wake_score_is_clamped_into_the_contract() -> None:
    (msg,) = outbox().messages(WakeDetected(SID, "hey_jarvis", 1.0000001))
    assert json.loads(msg.message.to_json())["score"] == 1.0


def test_message_ids_are_unique_uuids() -> None:
    ids = [json.loads(m.message.to_json())["message_id"] for m in published(outbox())]
    ids += [json.loads(m.message.to_json())["message_id"] for m in published(outbox())]
    assert len(set(ids)) == len(ids)
    for message_id in ids:
        assert str(uuid.UUID(message_id)) == message_id


def test_dual_publish_sends_the_same_message_to_both_trees() -> None:
    v1, v0 = outbox(dual_publish=True).messages(Listening(SID, UTT))
    assert v1.topic == f"v1/voice_assistant/room/salon/session/{SID}/state"
    assert v0.topic == f"voice_assistant/room/salon/session/{SID}/state"
    assert v1.message.to_json() == v0.message.to_json()


def test_timestamps_are_epoch_milliseconds() -> None:
    before = time.time() * 1000
    stamps = [json.loads(m.message.to_json())["timestamp"] for m in published(outbox())]
    after = time.time() * 1000
    for stamp in stamps:
        assert isinstance(stamp, int)
        assert before - 1 <= stamp <= after + 1


# --- arbitration: claims and results ---------------------------------------------------------


def household_messages() -> list[WakeClaim | WakeResult]:
    """The claim and result a satellite alone on the broker publishes for a wake word."""
    sent: list[WakeClaim | WakeResult] = []
    arbiter = WakeArbiter(
        identity=Identity("pi-salon", "salon", "home"),
        enabled=True,
        window_ms=200,
        deliver=lambda event: None,
        send=sent.append,
        abandon=lambda session: None,
        connected=lambda: True,
    )
    arbiter.on_event(WakeDetected(SID, "hey_jarvis", 0.87, 21.37), now_ms())
    return sent


def test_claims_and_results_meet_their_schemas_and_the_tolerant_readers(tmp_path: Path) -> None:
    write_schemas(tmp_path)
    claim, result = household_messages()
    claim_payload, result_payload = json.loads(claim.to_json()), json.loads(result.to_json())
    validator(tmp_path, "wake_claim").validate(claim_payload)
    validator(tmp_path, "wake_result").validate(result_payload)
    assert claim_payload["level_db"] == 21.4 and claim_payload["group"] == "home"
    assert result_payload["outcome"] == "alone" and result_payload["winner"] == "pi-salon"
    assert result_payload["claims"] == [claim_payload["claim_id"]]
    assert PeerClaim.model_validate_json(claim.to_json()).level_db == 21.4
    assert PeerResult.model_validate_json(result.to_json()).outcome == "alone"
    assert not validator(tmp_path, "wake_claim").is_valid(claim_payload | {"colour": "red"})
    assert not validator(tmp_path, "wake_result").is_valid(result_payload | {"outcome": "tie"})


def test_the_status_names_the_group_and_counts_wins_and_losses(tmp_path: Path) -> None:
    write_schemas(tmp_path)
    counters = {
        "invalid_messages": 0, "dropped_frames": 0, "wake_detections": 3, "sessions": 2,
        "retained_commands": 0, "arbitration_wins": 2, "arbitration_losses": 1,
    }  # fmt: skip
    status = StatusMessage(**status_fields(group="home", counters=counters))
    validator(tmp_path, "status").validate(json.loads(status.to_json()))
    described = StatusMessage.model_json_schema()["properties"]["group"]["description"]
    assert "arbitration" in described
    assert PeerStatus.model_validate_json(status.to_json()).group == "home"


def test_the_outbox_addresses_claims_and_results_to_the_group_and_nothing_without_one() -> None:
    settings = Settings(room_id="salon", satellite_id="pi-salon")
    claim = WakeClaim(
        claim_id=new_id(),
        satellite_id="pi-salon",
        room_id="salon",
        group="home",
        wake_word="hey_jarvis",
        score=0.9,
        level_db=20.0,
        detected_at=now_ms(),
        timestamp=now_ms(),
        message_id=new_id(),
    )
    outgoing = build_outbox(settings).household(claim)
    assert outgoing is not None
    assert (outgoing.topic, outgoing.qos) == ("v1/voice_assistant/household/home/wake/claim", 1)
    assert outgoing.message is claim
    off = settings.model_copy(update={"arbitration": ArbitrationSettings(enabled=False)})
    assert build_outbox(off).household(claim) is None


def test_the_status_goes_to_one_topic_per_tree() -> None:
    assert outbox(dual_publish=True).status_topics() == [
        "v1/voice_assistant/room/salon/satellite/pi-salon/status",
        "voice_assistant/room/salon/satellite/pi-salon/status",
    ]
