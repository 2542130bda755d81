"""A one-shot MQTT probe for `satellite check`: connect, subscribe, publish, read back, and
the broker's answer to each, with paho's reason codes translated at this boundary."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from satellite.config import MqttSettings

if TYPE_CHECKING:  # paho loads when the probe needs it: `satellite --help` stays fast
    import paho.mqtt.client as mqtt
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode


@dataclass(frozen=True)
class Reason:
    """A broker's reason code (CONNACK, SUBACK, PUBACK): its number and its name."""

    value: int
    name: str

    @property
    def is_failure(self) -> bool:
        """MQTT 5: codes from 0x80 up are failures."""
        return self.value >= 0x80

    def __str__(self) -> str:
        return self.name


def _reason(code: ReasonCode | None) -> Reason | None:
    return None if code is None else Reason(code.value, str(code))


@dataclass(frozen=True)
class Received:
    """A message the probe read: its payload, retain flag and arrival (monotonic)."""

    payload: bytes
    retain: bool
    at: float


class BrokerProbe:
    """One short-lived MQTT connection that reports what the broker answered, for `check`.

    Unlike MqttLink (which retries forever and only logs), it waits for each answer (CONNACK,
    SUBACK, PUBACK, a message) with a timeout and returns the broker's reason codes. MQTT 5,
    so a mosquitto 2 ACL refusal comes back in the PUBACK. paho runs the `_on_*` callbacks on
    its network thread; they only put events on `_events`, read by the checking thread.
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        client_id: str,
        password: str | None,
        mqtt5: bool = True,
        timeout: float,
    ) -> None:
        """`client_id`: not the daemon's, or the broker would disconnect the running satellite."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.settings = settings
        self.mqtt5 = mqtt5
        self.timeout = timeout
        self.messages: list[Received] = []
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311,
        )
        if self.settings.username is not None:
            self._client.username_pw_set(self.settings.username, password)
        if self.settings.tls:
            ca_file = self.settings.ca_file
            self._client.tls_set(ca_certs=None if ca_file is None else str(ca_file))
        self._client.connect_timeout = timeout
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_publish = self._on_publish
        self._client.on_message = self._on_message

    def connect(self) -> Reason | None:
        """The CONNACK's reason code, None when none came; OSError when unreachable."""
        self._client.connect(self.settings.host, self.settings.port, keepalive=30)
        self._client.loop_start()
        return _reason(self._wait("connack"))

    def subscribe(self, topic: str) -> Reason | None:
        """The SUBACK's code for `topic` (retained messages keep their flag, MQTT 5)."""
        from paho.mqtt.subscribeoptions import SubscribeOptions

        if self.mqtt5:
            self._client.subscribe(topic, options=SubscribeOptions(qos=1, retainAsPublished=True))
        else:
            self._client.subscribe(topic, qos=1)
        codes: list[ReasonCode] | None = self._wait("suback")
        return _reason(codes[0]) if codes else None

    def publish(self, topic: str, payload: bytes) -> Reason | None:
        """Publish (QoS 1, not retained); the PUBACK's reason code (always success in 3.1.1)."""
        self._client.publish(topic, payload, qos=1, retain=False)
        return _reason(self._wait("puback"))

    def message(self, match: Callable[[Received], bool], timeout: float) -> Received | None:
        """The first message so far or within `timeout` s that `match`es."""
        deadline = time.monotonic() + timeout
        while True:
            found = next((m for m in self.messages if match(m)), None)
            left = deadline - time.monotonic()
            if found is not None or left <= 0:
                return found
            self._next_event(left)

    def close(self) -> None:
        """Disconnect cleanly and stop paho's thread."""
        self._client.disconnect()
        self._client.loop_stop()

    def _wait(self, kind: str) -> Any:
        deadline = time.monotonic() + self.timeout
        while (left := deadline - time.monotonic()) > 0:
            event = self._next_event(left)
            if event is not None and event[0] == kind:
                return event[1]
        return None

    def _next_event(self, timeout: float) -> tuple[str, Any] | None:
        try:
            event = self._events.get(timeout=timeout)
        except queue.Empty:
            return None
        if event[0] == "message":
            self.messages.append(event[1])
        return event

    # paho's network thread:
    def _on_connect(
        self, _c: mqtt.Client, _u: Any, _f: Any, code: ReasonCode, _p: Properties | None
    ) -> None:
        self._events.put(("connack", code))

    def _on_subscribe(
        self, _c: mqtt.Client, _u: Any, _mid: int, codes: list[ReasonCode], _p: Any
    ) -> None:
        self._events.put(("suback", codes))

    def _on_publish(self, _c: mqtt.Client, _u: Any, _mid: int, code: ReasonCode, _p: Any) -> None:
        self._events.put(("puback", code))

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        message = Received(bytes(msg.payload), bool(msg.retain), time.monotonic())
        self._events.put(("message", message))
