"""Every MQTT topic the satellite publishes or subscribes to is built here, and only here."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from satellite.config import MqttSettings, check_topic_level


class TopicType(StrEnum):
    """The per-session topic types of the contract."""

    STATE = "state"
    INTERIM = "transcript/interim"
    FINAL = "transcript/final"
    OVERLAY_HINT = "overlay_hint"


# QoS per topic type (DESIGN.md): interims may be lost, states and finals may not.
QOS: dict[TopicType, int] = {
    TopicType.STATE: 1,
    TopicType.INTERIM: 0,
    TopicType.FINAL: 1,
    TopicType.OVERLAY_HINT: 1,
}


class SatelliteTopic(StrEnum):
    """The per-satellite topic types of the contract."""

    STATUS = "status"
    COMMAND = "command"


class HouseholdTopic(StrEnum):
    """The household topics of an arbitration group (one room answers)."""

    CLAIM = "wake/claim"
    RESULT = "wake/result"


# QoS 1, not retained: a claim is about one utterance, stale a second later.
HOUSEHOLD_QOS = 1


@dataclass(frozen=True)
class TopicTree:
    """One version of the tree: `{version}/{base}/room/{room}` (v0: `{base}/room/{room}`)."""

    version: str
    base_prefix: str
    room_id: str

    def __post_init__(self) -> None:
        check_topic_level(self.base_prefix)
        check_topic_level(self.room_id)
        if self.version:
            check_topic_level(self.version)

    @property
    def room(self) -> str:
        """The room's prefix in this tree."""
        head = f"{self.version}/" if self.version else ""
        return f"{head}{self.base_prefix}/room/{self.room_id}"

    def session(self, session_id: str, topic_type: TopicType) -> str:
        """A per-session topic to publish to."""
        return f"{self.room}/session/{check_topic_level(session_id)}/{topic_type}"

    def session_filter(self, topic_type: TopicType) -> str:
        """The subscription filter for `topic_type` in every session of the room."""
        return f"{self.room}/session/+/{topic_type}"

    def satellite(self, satellite_id: str, topic_type: SatelliteTopic) -> str:
        """A per-satellite topic."""
        check_topic_level(satellite_id)
        return f"{self.room}/satellite/{satellite_id}/{topic_type}"

    @property
    def base(self) -> str:
        """`{version}/{base}` (v0: `{base}`), above the rooms and households."""
        head = f"{self.version}/" if self.version else ""
        return f"{head}{self.base_prefix}"

    def household(self, group: str, topic_type: HouseholdTopic) -> str:
        """An arbitration group's topic, shared by the satellites of every room in it."""
        return f"{self.base}/household/{check_topic_level(group)}/{topic_type}"

    @property
    def every_session(self) -> str:
        """The filter for every message of every session in the room (a watcher's)."""
        return f"{self.room}/session/+/#"

    @property
    def every_status(self) -> str:
        """The filter for the status of every satellite in every room (peers)."""
        return f"{self.base}/room/+/satellite/+/{SatelliteTopic.STATUS}"


@dataclass(frozen=True)
class HouseholdMessageTopic:
    """What an inbound household topic is: a claim or result of our group, or a status."""

    kind: HouseholdTopic | SatelliteTopic
    satellite_id: str | None = None  # for a status: whose


@dataclass(frozen=True)
class SessionTopic:
    """What an inbound per-session topic names."""

    room_id: str
    session_id: str
    topic_type: TopicType


class Topics:
    """The topics of one satellite, in every tree it publishes to (v1, v0, or both)."""

    def __init__(
        self, *, room_id: str, satellite_id: str, mqtt: MqttSettings, group: str | None = None
    ) -> None:
        """`group`: the arbitration group this satellite claims wake words in; None: off."""
        self.satellite_id = check_topic_level(satellite_id)
        self.group = None if group is None else check_topic_level(group)
        primary = TopicTree(mqtt.topic_version, mqtt.base_prefix, room_id)
        trees = [primary]
        if mqtt.dual_publish and mqtt.topic_version:
            trees.append(TopicTree("", mqtt.base_prefix, room_id))
        self.trees: tuple[TopicTree, ...] = tuple(trees)

    def session(self, session_id: str, topic_type: TopicType) -> list[str]:
        """Where a per-session message goes, one topic per tree."""
        return [tree.session(session_id, topic_type) for tree in self.trees]

    def satellite(self, topic_type: SatelliteTopic) -> list[str]:
        """Where a per-satellite message goes, one topic per tree."""
        return [tree.satellite(self.satellite_id, topic_type) for tree in self.trees]

    def household(self, topic_type: HouseholdTopic) -> str:
        """Where this satellite's claims and results go: its group, in the primary tree only
        (every satellite of a household reads it there, dual publishing or not)."""
        if self.group is None:
            raise ValueError("arbitration is off: no household topic")
        return self.trees[0].household(self.group, topic_type)

    def household_topics(self) -> list[str]:
        """This satellite's group's claim and result topics (ValueError: arbitration is off)."""
        return [self.household(kind) for kind in HouseholdTopic]

    def subscriptions(self) -> list[str]:
        """The room's state and overlay_hint filters and this satellite's command topic; with
        a group, its claims and results and every satellite's status (to know the peers)."""
        filters: list[str] = []
        for tree in self.trees:
            filters.append(tree.session_filter(TopicType.STATE))
            filters.append(tree.session_filter(TopicType.OVERLAY_HINT))
            filters.append(tree.satellite(self.satellite_id, SatelliteTopic.COMMAND))
        if self.group is not None:
            filters.extend(self.household_topics())
            filters.append(self.trees[0].every_status)
        return filters

    def parse_household(self, topic: str) -> HouseholdMessageTopic | None:
        """A claim or result of our group, or some satellite's status (primary tree); None
        for anything else (another group's claims are never subscribed to)."""
        if self.group is None:
            return None
        for kind in HouseholdTopic:
            if topic == self.household(kind):
                return HouseholdMessageTopic(kind)
        parts = topic.split("/")
        pattern = self.trees[0].every_status.split("/")
        if len(parts) != len(pattern):
            return None
        if any(want not in ("+", part) for want, part in zip(pattern, parts, strict=True)):
            return None
        satellite_id = parts[-2]  # .../satellite/{satellite_id}/status
        if not satellite_id:
            return None
        return HouseholdMessageTopic(SatelliteTopic.STATUS, satellite_id)

    def parse_session(self, topic: str) -> SessionTopic | None:
        """The room, session and type of an inbound per-session topic in one of our trees."""
        for tree in self.trees:
            prefix = f"{tree.room}/session/"
            if not topic.startswith(prefix):
                continue
            session_id, _, rest = topic[len(prefix) :].partition("/")
            try:
                return SessionTopic(tree.room_id, check_topic_level(session_id), TopicType(rest))
            except ValueError:
                return None
        return None

    def is_command(self, topic: str) -> bool:
        """Whether `topic` is this satellite's command topic in one of our trees."""
        return topic in self.satellite(SatelliteTopic.COMMAND)
