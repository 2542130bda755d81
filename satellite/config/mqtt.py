"""MQTT settings: the broker, the topic layout and the arbitration group, and the rule for a
topic level (satellite.mqtt.topics builds the topics from these values)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from satellite.config.base import Section
from satellite.errors import ConfigError

_FORBIDDEN_IN_LEVEL = re.compile(r"[/+#\x00]")


def check_topic_level(value: str) -> str:
    """Reject values that cannot be one MQTT topic level (no `/`, `+`, `#`, NUL, not empty)."""
    if not value:
        raise ValueError("must not be empty")
    if _FORBIDDEN_IN_LEVEL.search(value):
        raise ValueError("must not contain '/', '+', '#' or NUL (it is one MQTT topic level)")
    return value


def _check_optional_level(value: str) -> str:
    return check_topic_level(value) if value else value


TopicLevel = Annotated[str, AfterValidator(check_topic_level)]


class MqttSettings(Section):
    """Broker connection and topic layout."""

    host: str = Field("127.0.0.1", description="broker host name or address")
    port: int = Field(1883, ge=1, le=65535, description="broker TCP port (8883 is usual for TLS)")
    username: str | None = Field(None, description="MQTT user; the password comes from a file")
    password_file: Path | None = Field(None, description="file holding the password (one line)")
    tls: bool = Field(False, description="connect with TLS (mqtts)")
    ca_file: Path | None = Field(None, description="CA bundle for TLS; system CAs when unset")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive, seconds")
    reconnect_min_s: float = Field(1.0, gt=0, le=60, description="first reconnect delay, seconds")
    reconnect_max_s: float = Field(30.0, gt=0, le=3600, description="reconnect delay cap, seconds")
    offline_queue: int = Field(
        1000,
        ge=10,
        le=100000,
        description="QoS 1 messages kept while the broker is unreachable; "
        "interims (QoS 0) are dropped first",
    )
    topic_version: Annotated[str, AfterValidator(_check_optional_level)] = Field(
        "v1", description="topic version level; empty = legacy v0 (env MQTT_TOPIC_VERSION)"
    )
    base_prefix: TopicLevel = Field(
        "voice_assistant", description="topic base prefix (env MQTT_BASE_PREFIX)"
    )
    dual_publish: bool = Field(False, description="also publish to the legacy v0 tree")
    max_payload_bytes: int = Field(
        65536, ge=256, le=16 << 20, description="inbound payloads above this are dropped unread"
    )

    @model_validator(mode="after")
    def _check_backoff(self) -> MqttSettings:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        return self

    def read_password(self) -> str | None:
        """The password from `password_file`, or None when no file is configured."""
        if self.password_file is None:
            return None
        try:
            return self.password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"mqtt.password_file: cannot read {self.password_file}: {exc.strerror}"
            ) from exc


class ArbitrationSettings(Section):
    """One room answers: satellites that hear the same wake word pick one among themselves."""

    enabled: bool = Field(
        True,
        description="claim each wake word on the household topic and open the session only if "
        "this satellite heard it best; alone on the broker (or without one) nobody waits",
    )
    window_ms: int = Field(
        200,
        ge=50,
        le=2000,
        description="how long a satellite with peers online holds a new session back while the "
        "claims of the others arrive, milliseconds (wake_detected goes out this much later; "
        "no audio is lost)",
    )
    group: TopicLevel = Field(
        "home",
        description="the satellites that arbitrate with each other (one MQTT topic level): "
        "give each household on a shared broker its own",
    )
