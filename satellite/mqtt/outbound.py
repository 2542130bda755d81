"""Turns session events and household messages into contract messages addressed to their
topics; builds this satellite's outbox from the settings."""

from __future__ import annotations

from dataclasses import dataclass

from satellite.config import Settings
from satellite.core.ids import SatelliteState, new_id, now_ms
from satellite.core.session import (
    Event,
    FaultChanged,
    Final,
    Idle,
    Interim,
    Listening,
    MuteChanged,
    WakeDetected,
)
from satellite.mqtt.contracts import (
    Outbound,
    StateMessage,
    TranscriptFinal,
    TranscriptInterim,
    WakeClaim,
    WakeResult,
    Word,
)
from satellite.mqtt.topics import (
    HOUSEHOLD_QOS,
    QOS,
    HouseholdTopic,
    SatelliteTopic,
    Topics,
    TopicType,
)


@dataclass(frozen=True)
class Outgoing:
    """One message for one topic."""

    topic: str
    message: Outbound
    qos: int
    topic_type: TopicType


@dataclass(frozen=True)
class ToGroup:
    """A claim or result for the arbitration group's topic."""

    topic: str
    message: WakeClaim | WakeResult
    qos: int


class Outbox:
    """Addresses and stamps (message_id, timestamp) the messages for each event."""

    def __init__(self, *, room_id: str, topics: Topics) -> None:
        self.room_id = room_id
        self.topics = topics
        self.source = f"satellite/{topics.satellite_id}"

    def messages(self, event: Event) -> list[Outgoing]:
        """The messages an event publishes, one per topic tree."""
        topic_type, message = self._message(event)
        return [
            Outgoing(topic, message, QOS[topic_type], topic_type)
            for topic in self.topics.session(event.session_id, topic_type)
        ]

    def household(self, message: WakeClaim | WakeResult) -> ToGroup | None:
        """A claim or result for this satellite's group; None when arbitration is off."""
        if self.topics.group is None:
            return None
        kind = HouseholdTopic.CLAIM if isinstance(message, WakeClaim) else HouseholdTopic.RESULT
        return ToGroup(self.topics.household(kind), message, HOUSEHOLD_QOS)

    def status_topics(self) -> list[str]:
        """Where this satellite's retained status goes, one topic per tree (the will: the first)."""
        return self.topics.satellite(SatelliteTopic.STATUS)

    def _message(self, event: Event) -> tuple[TopicType, Outbound]:
        if isinstance(event, Interim):
            return TopicType.INTERIM, TranscriptInterim(
                text=event.text,
                sequence=event.sequence,
                timestamp=now_ms(),
                message_id=new_id(),
                utt_id=event.utt_id,
            )
        if isinstance(event, Final):
            return TopicType.FINAL, _final(event)
        if isinstance(event, WakeDetected):
            return TopicType.STATE, self._state(
                "wake_detected", event.session_id, event.wake_word, event.score
            )
        return TopicType.STATE, self._state(_state_name(event), event.session_id)

    def _state(
        self,
        state: SatelliteState,
        session_id: str,
        wake_word: str | None = None,
        score: float | None = None,
    ) -> StateMessage:
        return StateMessage(
            state=state,
            timestamp=now_ms(),
            message_id=new_id(),
            room_id=self.room_id,
            session_id=session_id,
            source=self.source,
            wake_word=wake_word,
            score=None if score is None else round(min(1.0, max(0.0, score)), 4),
        )


def _final(event: Final) -> TranscriptFinal:
    transcript = event.transcript
    return TranscriptFinal(
        text=transcript.text,
        confidence=transcript.confidence,
        timestamp=now_ms(),
        message_id=new_id(),
        utt_id=event.utt_id,
        words=[Word(word=w.word, start=w.start, end=w.end, conf=w.conf) for w in transcript.words],
    )


def _state_name(event: Listening | Idle | MuteChanged | FaultChanged) -> SatelliteState:
    if isinstance(event, Listening):
        return "listening"
    if isinstance(event, MuteChanged):
        return "muted" if event.muted else "idle"
    if isinstance(event, FaultChanged) and event.reason is not None:
        return "error"
    return "idle"


def build_outbox(settings: Settings) -> Outbox:
    """Topics and message stamping for this room and satellite."""
    arbitration = settings.arbitration
    topics = Topics(
        room_id=settings.room_id,
        satellite_id=settings.satellite_id,
        mqtt=settings.mqtt,
        group=arbitration.group if arbitration.enabled else None,
    )
    return Outbox(room_id=settings.room_id, topics=topics)
