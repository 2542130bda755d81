"""Validates what arrives on the subscribed topics: size first, then JSON, then the contract."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from satellite.mqtt.contracts import (
    Command,
    GatewayState,
    OverlayHint,
    PeerClaim,
    PeerResult,
    PeerStatus,
)
from satellite.mqtt.topics import HouseholdTopic, Topics, TopicType

# The runtime reads inbound messages through this module: the items, and the payload and
# topic types they carry (contracts and topics are imported only inside satellite.mqtt).
__all__ = [
    "ClaimReceived",
    "Cleared",
    "CommandReceived",
    "GatewayStateReceived",
    "Household",
    "Inbound",
    "OverlayHintReceived",
    "PeerClaim",
    "PeerResult",
    "PeerStatus",
    "PeerStatusReceived",
    "Rejected",
    "ResultReceived",
    "Topics",
    "parse_inbound",
]

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class GatewayStateReceived:
    """The gateway (or dashboard) announced a state for a session in our room."""

    session_id: str
    message: GatewayState


@dataclass(frozen=True)
class OverlayHintReceived:
    """The gateway asked the satellite to stay attentive (or not)."""

    session_id: str
    message: OverlayHint


@dataclass(frozen=True)
class CommandReceived:
    """A command for this satellite."""

    message: Command


@dataclass(frozen=True)
class ClaimReceived:
    """A satellite of our arbitration group claimed a wake word."""

    message: PeerClaim


@dataclass(frozen=True)
class ResultReceived:
    """A satellite of our arbitration group decided about its claim."""

    message: PeerResult


@dataclass(frozen=True)
class PeerStatusReceived:
    """Some satellite's status (`satellite_id` from its topic): is it a peer online?"""

    satellite_id: str
    message: PeerStatus


Household = ClaimReceived | ResultReceived | PeerStatusReceived


@dataclass(frozen=True)
class Cleared:
    """An empty payload: someone cleared a retained message. Neither valid nor an error."""

    topic: str


@dataclass(frozen=True)
class Rejected:
    """An inbound payload that was dropped, and why (for the log line and the counter)."""

    topic: str
    reason: str


Inbound = (
    GatewayStateReceived | OverlayHintReceived | CommandReceived | Household | Cleared | Rejected
)


def parse_inbound(topic: str, payload: bytes, *, topics: Topics, max_bytes: int) -> Inbound:
    """Classify and validate one inbound message; never raises."""
    if not payload:  # MQTT delivers the clearing of a retained message like any publish
        return Cleared(topic)
    if len(payload) > max_bytes:
        return Rejected(topic, f"payload of {len(payload)} bytes exceeds {max_bytes}")
    if topics.is_command(topic):
        command = _validate(Command, topic, payload)
        return command if isinstance(command, Rejected) else CommandReceived(command)
    household = _parse_household(topic, payload, topics)
    return household if household is not None else _parse_session(topic, payload, topics)


def _parse_household(topic: str, payload: bytes, topics: Topics) -> Inbound | None:
    """A claim, a result or a status, validated; None when `topic` is none of them."""
    where = topics.parse_household(topic)
    if where is None:
        return None
    if where.kind == HouseholdTopic.CLAIM:
        claim = _validate(PeerClaim, topic, payload)
        return claim if isinstance(claim, Rejected) else ClaimReceived(claim)
    if where.kind == HouseholdTopic.RESULT:
        result = _validate(PeerResult, topic, payload)
        return result if isinstance(result, Rejected) else ResultReceived(result)
    status = _validate(PeerStatus, topic, payload)
    if isinstance(status, Rejected):
        return status
    return PeerStatusReceived(where.satellite_id or status.satellite_id, status)


def _parse_session(topic: str, payload: bytes, topics: Topics) -> Inbound:
    where = topics.parse_session(topic)
    if where is None:
        return Rejected(topic, "not a topic this satellite reads")
    if where.topic_type == TopicType.STATE:
        state = _validate(GatewayState, topic, payload)
        return (
            state if isinstance(state, Rejected) else GatewayStateReceived(where.session_id, state)
        )
    if where.topic_type == TopicType.OVERLAY_HINT:
        hint = _validate(OverlayHint, topic, payload)
        return hint if isinstance(hint, Rejected) else OverlayHintReceived(where.session_id, hint)
    return Rejected(topic, f"{where.topic_type} is not read by the satellite")


def _validate(model: type[M], topic: str, payload: bytes) -> M | Rejected:
    try:
        # UTF-8 only (RFC 8259); json.loads would also guess UTF-16/32 from raw bytes.
        data = json.loads(payload.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # bad UTF-8/JSON, or an int over 4300 digits
        return Rejected(topic, f"not JSON: {exc.__class__.__name__}")
    if not isinstance(data, dict):
        return Rejected(topic, f"expected a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(payload)"
        return Rejected(topic, f"{field}: {first['msg']}")
