"""The MQTT payloads as pydantic models: strict for what we publish, tolerant for what we read.

Delivery is at-least-once: QoS 1 repeats a message whose acknowledgement was lost, with the
same `message_id`, so consumers de-duplicate on `message_id`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from satellite.core.ids import SatelliteState

MessageId = Annotated[
    str,
    Field(
        description="unique per message (UUID4). Delivery is at-least-once: a message whose "
        "MQTT acknowledgement was lost arrives again with the same message_id, so consumers "
        "de-duplicate on it"
    ),
]


class Outbound(BaseModel):
    """Base of everything we publish: unknown fields are a bug, so they are forbidden."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_json(self) -> bytes:
        """The wire form: compact JSON without absent optional fields."""
        return self.model_dump_json(exclude_none=True).encode()


class Inbound(BaseModel):
    """Base of everything we receive: unknown fields are ignored (tolerant reader)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class StateMessage(Outbound):
    """`.../session/{session_id}/state` published by the satellite."""

    state: SatelliteState
    timestamp: int = Field(ge=0, description="Unix epoch milliseconds")
    message_id: MessageId
    room_id: str
    session_id: str
    source: str = Field(description="who published it: `satellite/<satellite_id>`")
    wake_word: str | None = Field(None, description="model that fired; on wake_detected only")
    score: float | None = Field(None, ge=0, le=1, description="its score; on wake_detected only")

    @model_validator(mode="after")
    def _wake_fields(self) -> StateMessage:
        detected = self.state == "wake_detected"
        if detected != (self.wake_word is not None) or detected != (self.score is not None):
            raise ValueError("wake_word and score are set on wake_detected, and only there")
        return self


class TranscriptInterim(Outbound):
    """`.../transcript/interim`: the partial text, each time it changes."""

    text: str
    sequence: int = Field(ge=1, description="1, 2, 3... within one utterance")
    timestamp: int = Field(ge=0)
    message_id: MessageId
    utt_id: str


class Word(Outbound):
    """One recognised word with its times relative to the utterance start, in seconds."""

    word: str
    start: float = Field(ge=0)
    end: float = Field(ge=0)
    conf: float = Field(ge=0, le=1)


class TranscriptFinal(Outbound):
    """`.../transcript/final`: the utterance's text once it has ended."""

    text: str = Field(min_length=1)
    confidence: float = Field(ge=0, le=1)
    timestamp: int = Field(ge=0)
    message_id: MessageId
    utt_id: str
    words: list[Word] | None = None


class StatusCounters(Outbound):
    """Health figures since the process started."""

    invalid_messages: int = Field(ge=0, description="inbound payloads rejected")
    dropped_frames: int = Field(ge=0, description="capture chunks dropped (queue full)")
    wake_detections: int = Field(ge=0)
    sessions: int = Field(ge=0, description="sessions opened (wake word or listen command)")
    retained_commands: int = Field(
        ge=0,
        description="retained messages on the command topic, ignored: commands act only live",
    )
    arbitration_wins: int = Field(
        ge=0, description="wake words claimed with peers online, and answered here"
    )
    arbitration_losses: int = Field(
        ge=0,
        description="wake words heard here but answered by another satellite of the group "
        "(no session opened here; also counted in wake_detections)",
    )


class StatusMessage(Outbound):
    """`.../satellite/{satellite_id}/status`, retained: while online, the birth and every change;
    `online: false` at a clean stop; and the last will, `online: false` without a `timestamp`.
    """

    online: bool = Field(
        description="true while this satellite runs and is connected; false in the status of "
        "a clean stop and in the last will (the broker's word that the connection is gone)"
    )
    room_id: str
    satellite_id: str
    instance_id: str = Field(
        description="random id of this satellite process, the same in all its statuses and its "
        "last will; another value means another process: a restart, or a second satellite "
        "configured with this satellite_id"
    )
    since: int = Field(
        ge=0,
        description="Unix epoch milliseconds when this satellite process started, the same in "
        "all its statuses and its last will: the will ends the run that began then",
    )
    timestamp: int | None = Field(
        None,
        ge=0,
        description="Unix epoch milliseconds when this status was published; set in every status "
        "but the last will: the broker publishes the will when it notices the connection is "
        "gone, a moment nobody can stamp in advance, so consumers take its time of arrival",
    )
    state: SatelliteState | None = None
    muted: bool | None = None
    led: str | None = Field(None, description="name of the LED pattern shown")
    fault: str | None = Field(None, description="why the microphone does not work, if it does not")
    accessory_fault: str | None = Field(
        None,
        description="why the LEDs or the button do not work, if they do not (retried; the "
        "satellite listens without them)",
    )
    state_error: str | None = Field(
        None,
        description="why the mute state could not be saved (it is then lost on a restart) or "
        "was unreadable at start (the satellite then starts muted); absent when it is fine",
    )
    version: str | None = None
    uptime_s: float | None = Field(None, ge=0)
    group: str | None = Field(
        None,
        description="the arbitration group whose wake words this satellite claims (peers with "
        "the same group wait for each other's claims); absent when arbitration is off",
    )
    counters: StatusCounters | None = None

    @model_validator(mode="after")
    def _stamped_when_online(self) -> StatusMessage:
        if self.online and self.timestamp is None:
            raise ValueError("timestamp is set whenever online is true (only the will has none)")
        return self


ResultOutcome = Literal["won", "lost", "alone"]
PeerId = Annotated[str, Field(min_length=1, max_length=128)]


class WakeClaim(Outbound):
    """`{v}/{base}/household/{group}/wake/claim`: this satellite heard a wake word (QoS 1, not
    retained). Every satellite of the group that heard the same utterance claims it; after
    the window each picks the same winner: highest `level_db`, then `score`, then the
    smallest `satellite_id`."""

    claim_id: str = Field(description="unique per claim (UUID4); results name the claims")
    satellite_id: str
    room_id: str
    group: str
    wake_word: str = Field(description="model that fired")
    score: float = Field(ge=0, le=1, description="its score, rounded to 4 places")
    level_db: float = Field(
        ge=-200,
        le=200,
        description="how loud the wake word was here: the loudest 80 ms frame of the last "
        "second before the detection over this room's noise floor (the quietest frame of the "
        "last 5 s, at least -80 dBFS), dB, rounded to 0.1",
    )
    detected_at: int = Field(
        ge=0, description="Unix epoch milliseconds when the detecting audio was captured"
    )
    timestamp: int = Field(ge=0, description="Unix epoch milliseconds")
    message_id: MessageId


class WakeResult(Outbound):
    """`{v}/{base}/household/{group}/wake/result`: what one satellite decided about its claim
    (QoS 1, not retained): `won` (it opened the session), `lost` (another one answers) or
    `alone` (no peer online: it did not wait). For dashboards, and for a satellite that
    claims later: a winner's result settles the utterance."""

    claim_id: str = Field(description="the claim decided on: this satellite's own")
    satellite_id: str
    room_id: str
    group: str
    outcome: ResultOutcome
    winner: str = Field(description="satellite_id of the satellite that opened the session")
    claims: list[str] = Field(description="claim_ids considered, this satellite's first")
    detected_at: int = Field(ge=0, description="detected_at of the claim decided on")
    timestamp: int = Field(ge=0, description="Unix epoch milliseconds")
    message_id: MessageId


class PeerClaim(Inbound):
    """A claim read from the group's topic; what the decision uses, nothing else required."""

    claim_id: PeerId
    satellite_id: PeerId
    group: str
    score: float = Field(ge=0, le=1)
    level_db: float = Field(ge=-200, le=200)
    detected_at: int = Field(ge=0)
    room_id: str | None = None  # shown by `satellite listen`
    wake_word: str | None = None


class PeerResult(Inbound):
    """A result read from the group's topic; an unknown outcome is kept (it settles nothing)."""

    claim_id: PeerId
    satellite_id: PeerId
    group: str
    outcome: str = Field(max_length=64)
    winner: PeerId
    detected_at: int = Field(ge=0)
    room_id: str | None = None  # shown by `satellite listen`
    claims: list[str] = Field(default_factory=list)


class PeerStatus(Inbound):
    """Another satellite's status: whether it is online and can hear, and its group."""

    online: bool
    satellite_id: PeerId
    group: str | None = None
    muted: bool | None = None


class RetainedStatus(Inbound):
    """A status read back from our own status topic, from any version of the satellite."""

    online: bool
    satellite_id: str
    instance_id: str | None = None


class GatewayState(Inbound):
    """A `state` message from the gateway; any state string is accepted."""

    state: str = Field(min_length=1, max_length=64)
    source: str | None = None
    session_id: str | None = None
    timestamp: int | None = None


class OverlayHint(Inbound):
    """`overlay_hint`: whether the assistant wants the satellite to stay attentive."""

    keep_open: bool = False


class Command(Inbound):
    """An inbound satellite command."""

    command: Literal["mute", "unmute", "listen"]
