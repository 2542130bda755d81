"""Every topic string of the contract: v1, legacy v0, custom prefix, dual publishing."""

from __future__ import annotations

import pytest

from satellite.config import MqttSettings
from satellite.mqtt.topics import (
    QOS,
    HouseholdMessageTopic,
    HouseholdTopic,
    SatelliteTopic,
    SessionTopic,
    Topics,
    TopicTree,
    TopicType,
)

SID = "3f2b9c1e-8d4a-4e2f-9a6b-1c2d3e4f5a6b"


def topics(**mqtt: object) -> Topics:
    return Topics(room_id="salon", satellite_id="pi-salon", mqtt=MqttSettings(**mqtt))


def test_v1_state_topic() -> None:
    assert topics().session(SID, TopicType.STATE) == [
        f"v1/voice_assistant/room/salon/session/{SID}/state"
    ]


def test_v1_interim_topic() -> None:
    assert topics().session(SID, TopicType.INTERIM) == [
        f"v1/voice_assistant/room/salon/session/{SID}/transcript/interim"
    ]


def test_v1_final_topic() -> None:
    assert topics().session(SID, TopicType.FINAL) == [
        f"v1/voice_assistant/room/salon/session/{SID}/transcript/final"
    ]


def test_v0_has_no_version_level() -> None:
    assert topics(topic_version="").session(SID, TopicType.STATE) == [
        f"voice_assistant/room/salon/session/{SID}/state"
    ]


def test_custom_version_level() -> None:
    assert topics(topic_version="v2").session(SID, TopicType.FINAL) == [
        f"v2/voice_assistant/room/salon/session/{SID}/transcript/final"
    ]


def test_custom_base_prefix() -> None:
    assert topics(base_prefix="house").session(SID, TopicType.STATE) == [
        f"v1/house/room/salon/session/{SID}/state"
    ]


def test_custom_base_prefix_in_v0() -> None:
    assert topics(topic_version="", base_prefix="house").session(SID, TopicType.STATE) == [
        f"house/room/salon/session/{SID}/state"
    ]


def test_satellite_topics() -> None:
    t = topics()
    assert t.satellite(SatelliteTopic.STATUS) == [
        "v1/voice_assistant/room/salon/satellite/pi-salon/status"
    ]
    assert t.satellite(SatelliteTopic.COMMAND) == [
        "v1/voice_assistant/room/salon/satellite/pi-salon/command"
    ]


def test_dual_publish_session_topics_v1_then_v0() -> None:
    assert topics(dual_publish=True).session(SID, TopicType.INTERIM) == [
        f"v1/voice_assistant/room/salon/session/{SID}/transcript/interim",
        f"voice_assistant/room/salon/session/{SID}/transcript/interim",
    ]


def test_dual_publish_satellite_topics_v1_then_v0() -> None:
    assert topics(dual_publish=True).satellite(SatelliteTopic.STATUS) == [
        "v1/voice_assistant/room/salon/satellite/pi-salon/status",
        "voice_assistant/room/salon/satellite/pi-salon/status",
    ]


def test_dual_publish_keeps_custom_prefix_in_both_trees() -> None:
    assert topics(dual_publish=True, base_prefix="house").session(SID, TopicType.STATE) == [
        f"v1/house/room/salon/session/{SID}/state",
        f"house/room/salon/session/{SID}/state",
    ]


def test_dual_publish_on_legacy_is_one_tree() -> None:
    assert topics(dual_publish=True, topic_version="").session(SID, TopicType.STATE) == [
        f"voice_assistant/room/salon/session/{SID}/state"
    ]


def test_subscriptions() -> None:
    assert topics().subscriptions() == [
        "v1/voice_assistant/room/salon/session/+/state",
        "v1/voice_assistant/room/salon/session/+/overlay_hint",
        "v1/voice_assistant/room/salon/satellite/pi-salon/command",
    ]


def test_subscriptions_v0() -> None:
    assert topics(topic_version="").subscriptions() == [
        "voice_assistant/room/salon/session/+/state",
        "voice_assistant/room/salon/session/+/overlay_hint",
        "voice_assistant/room/salon/satellite/pi-salon/command",
    ]


def test_dual_publish_subscribes_to_both_trees() -> None:
    assert topics(dual_publish=True).subscriptions() == [
        "v1/voice_assistant/room/salon/session/+/state",
        "v1/voice_assistant/room/salon/session/+/overlay_hint",
        "v1/voice_assistant/room/salon/satellite/pi-salon/command",
        "voice_assistant/room/salon/session/+/state",
        "voice_assistant/room/salon/session/+/overlay_hint",
        "voice_assistant/room/salon/satellite/pi-salon/command",
    ]


@pytest.mark.parametrize("topic_type", list(TopicType))
def test_parse_session_round_trips(topic_type: TopicType) -> None:
    t = topics()
    (topic,) = t.session(SID, topic_type)
    assert t.parse_session(topic) == SessionTopic("salon", SID, topic_type)


def test_parse_session_reads_both_trees_when_dual() -> None:
    t = topics(dual_publish=True)
    v1, v0 = t.session(SID, TopicType.STATE)
    assert t.parse_session(v1) == SessionTopic("salon", SID, TopicType.STATE)
    assert t.parse_session(v0) == SessionTopic("salon", SID, TopicType.STATE)


@pytest.mark.parametrize(
    "topic",
    [
        f"v1/voice_assistant/room/kitchen/session/{SID}/state",
        f"v1/voice_assistant/room/salon2/session/{SID}/state",
        f"v2/voice_assistant/room/salon/session/{SID}/state",
        f"v1/other/room/salon/session/{SID}/state",
        f"voice_assistant/room/salon/session/{SID}/state",  # v0 tree while v1 only
        f"v1/voice_assistant/room/salon/session/{SID}/bogus",
        f"v1/voice_assistant/room/salon/session/{SID}/state/extra",
        f"v1/voice_assistant/room/salon/session/{SID}",
        "v1/voice_assistant/room/salon/satellite/pi-salon/command",
    ],
)
def test_parse_session_rejects_foreign_topics(topic: str) -> None:
    assert topics().parse_session(topic) is None


def test_parse_session_rejects_v1_when_legacy() -> None:
    assert (
        topics(topic_version="").parse_session(f"v1/voice_assistant/room/salon/session/{SID}/state")
        is None
    )


def test_parse_session_rejects_empty_session_id() -> None:
    assert topics().parse_session("v1/voice_assistant/room/salon/session//state") is None


def test_is_command() -> None:
    t = topics(dual_publish=True)
    assert t.is_command("v1/voice_assistant/room/salon/satellite/pi-salon/command")
    assert t.is_command("voice_assistant/room/salon/satellite/pi-salon/command")
    assert not t.is_command("v1/voice_assistant/room/salon/satellite/other/command")
    assert not t.is_command("v1/voice_assistant/room/salon/satellite/pi-salon/status")


@pytest.mark.parametrize("session_id", ["a/b", "a+b", "#", "a#", "a\x00b", ""])
def test_bad_session_id_is_rejected(session_id: str) -> None:
    with pytest.raises(ValueError):
        topics().session(session_id, TopicType.STATE)


def test_plus_session_id_is_rejected_for_publishing() -> None:
    with pytest.raises(ValueError):
        topics().session("+", TopicType.STATE)


@pytest.mark.parametrize("level", ["a/b", "+", "#", "x\x00", ""])
def test_bad_room_id_is_rejected(level: str) -> None:
    with pytest.raises(ValueError):
        Topics(room_id=level, satellite_id="pi", mqtt=MqttSettings())


@pytest.mark.parametrize("level", ["a/b", "+", "#", "x\x00", ""])
def test_bad_satellite_id_is_rejected(level: str) -> None:
    with pytest.raises(ValueError):
        Topics(room_id="salon", satellite_id=level, mqtt=MqttSettings())


@pytest.mark.parametrize("level", ["a/b", "+", "#", "x\x00", ""])
def test_bad_base_prefix_is_rejected(level: str) -> None:
    with pytest.raises(ValueError):
        TopicTree("v1", level, "salon")


@pytest.mark.parametrize("level", ["a/b", "+", "#", "x\x00"])
def test_bad_version_is_rejected(level: str) -> None:
    with pytest.raises(ValueError):
        TopicTree(level, "voice_assistant", "salon")


def test_qos_per_topic_type() -> None:
    assert QOS[TopicType.STATE] == 1
    assert QOS[TopicType.INTERIM] == 0
    assert QOS[TopicType.FINAL] == 1


# --- the household topics (arbitration) ------------------------------------------------------


def household_topics(**mqtt: object) -> Topics:
    return Topics(room_id="salon", satellite_id="pi-salon", mqtt=MqttSettings(**mqtt), group="home")


def test_household_topics_are_shared_by_the_group_above_the_rooms() -> None:
    t = household_topics()
    assert t.household(HouseholdTopic.CLAIM) == "v1/voice_assistant/household/home/wake/claim"
    assert t.household(HouseholdTopic.RESULT) == "v1/voice_assistant/household/home/wake/result"
    assert household_topics(topic_version="").household(HouseholdTopic.CLAIM) == (
        "voice_assistant/household/home/wake/claim"
    )
    with pytest.raises(ValueError, match="arbitration is off"):
        topics().household(HouseholdTopic.CLAIM)


def test_with_a_group_it_subscribes_to_claims_results_and_every_status_once() -> None:
    assert household_topics(dual_publish=True).subscriptions()[6:] == [
        "v1/voice_assistant/household/home/wake/claim",
        "v1/voice_assistant/household/home/wake/result",
        "v1/voice_assistant/room/+/satellite/+/status",
    ]
    assert len(topics().subscriptions()) == 3  # arbitration off: nothing of the household


def test_parse_household_tells_claims_results_and_statuses_from_the_rest() -> None:
    t = household_topics()
    claim, result = t.household(HouseholdTopic.CLAIM), t.household(HouseholdTopic.RESULT)
    assert t.parse_household(claim) == HouseholdMessageTopic(HouseholdTopic.CLAIM)
    assert t.parse_household(result) == HouseholdMessageTopic(HouseholdTopic.RESULT)
    assert t.parse_household("v1/voice_assistant/room/kitchen/satellite/pi-k/status") == (
        HouseholdMessageTopic(SatelliteTopic.STATUS, "pi-k")
    )
    for other in [
        "v1/voice_assistant/household/flat-2/wake/claim",  # another group
        "v1/voice_assistant/room/kitchen/satellite/pi-k/command",
        "v1/voice_assistant/room/salon/session/s1/state",
        "voice_assistant/room/kitchen/satellite/pi-k/status",  # the v0 tree
        "v1/voice_assistant/room/kitchen/satellite//status",
    ]:
        assert t.parse_household(other) is None, other
    assert topics().parse_household(claim) is None  # arbitration off


def test_bad_group_is_rejected() -> None:
    with pytest.raises(ValueError):
        Topics(room_id="salon", satellite_id="pi", mqtt=MqttSettings(), group="a/b")


def test_household_topics_are_the_claim_and_result_of_the_group() -> None:
    assert household_topics().household_topics() == [
        "v1/voice_assistant/household/home/wake/claim",
        "v1/voice_assistant/household/home/wake/result",
    ]
    with pytest.raises(ValueError, match="arbitration is off"):
        topics().household_topics()


def test_every_session_is_the_filter_of_all_messages_of_the_rooms_sessions() -> None:
    assert topics().trees[0].every_session == "v1/voice_assistant/room/salon/session/+/#"
