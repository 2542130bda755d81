"""An MQTT client for tests: records every message under a topic filter, waits for them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions


@dataclass(frozen=True)
class Received:
    """One message as the probe got it; `at` is time.monotonic() on arrival."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    at: float


class Probe:
    """Subscribes to `topic_filter` (QoS 1, MQTT 5, retain-as-published) and records messages.

    It reconnects and resubscribes by itself after a broker restart (retry every 1-2 s);
    messages published meanwhile are lost, retained ones arrive again on resubscribe.

    The QoS of a received message is min(publisher's QoS, 1); `retain` is the publisher's flag
    (or 1 for a retained message delivered on subscribe).
    """

    def __init__(
        self,
        host: str,
        port: int,
        topic_filter: str = "#",
        *,
        client_id: str = "",
        timeout: float = 5.0,
        persistent: bool = False,
    ) -> None:
        """`persistent`: a session the broker keeps (and queues for) while we are away; it
        needs a `client_id`, and a broker with persistence to survive its restarts."""
        if persistent and not client_id:
            raise ValueError("a persistent probe needs a client_id")
        self.persistent = persistent
        self.host = host
        self.port = port
        self.topic_filter = topic_filter
        self.timeout = timeout
        self._changed = threading.Condition()
        self._received: list[Received] = []
        self._subscribed = threading.Event()
        self._sub_codes: list[ReasonCode] = []
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
        )
        self._client.reconnect_delay_set(min_delay=1, max_delay=2)
        # The callbacks run on paho's network thread (loop_start); they only touch
        # state guarded by self._changed or the Event.
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._started = False

    def start(self) -> None:
        """Connect, subscribe, and return once the broker's SUBACK arrived; idempotent.

        A second call must not connect again: paho would close the subscribed connection and
        return before the new one's SUBACK, so a probe started, then entered with `with`,
        would miss what is published meanwhile and get retained messages a second time.
        """
        if self._started:
            return
        if self.persistent:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = 3600
            self._client.connect(
                self.host, self.port, keepalive=30, clean_start=False, properties=properties
            )
        else:
            self._client.connect(self.host, self.port, keepalive=30)
        self._started = True
        self._client.loop_start()
        try:
            self._check_subscribed()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Disconnect and stop the network thread; idempotent."""
        if not self._started:
            return
        self._started = False
        self._client.disconnect()
        self._client.loop_stop()

    def publish(
        self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False
    ) -> None:
        """Publish and return once paho has handed it over (PUBACK for QoS 1)."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(self.timeout)
        if not info.is_published():
            raise AssertionError(f"publish to {topic!r} not acknowledged within {self.timeout} s")

    def received(self) -> list[Received]:
        """A copy of every message so far, in arrival order."""
        with self._changed:
            return list(self._received)

    def wait_for(
        self, predicate: Callable[[Received], bool], timeout: float, *, start: int = 0
    ) -> Received:
        """The first message from index `start` on that satisfies `predicate`."""
        found: list[Received] = []

        def match() -> bool:
            found[:] = [m for m in self._received[start:] if predicate(m)][:1]
            return bool(found)

        with self._changed:
            if not self._changed.wait_for(match, timeout):
                raise AssertionError(f"no matching message within {timeout} s;\n{self._dump()}")
            return found[0]

    def wait_count(self, n: int, timeout: float) -> list[Received]:
        """The first `n` messages, once at least `n` have arrived."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._received) >= n, timeout):
                raise AssertionError(f"expected {n} messages within {timeout} s;\n{self._dump()}")
            return self._received[:n]

    def __enter__(self) -> Probe:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _dump(self) -> str:
        lines = [f"received {len(self._received)} on {self.topic_filter!r}:"]
        lines += [
            f"  {m.topic} qos={m.qos} retain={m.retain} {m.payload[:200]!r}" for m in self._received
        ]
        return "\n".join(lines)

    def _check_subscribed(self) -> None:
        if not self._subscribed.wait(self.timeout):
            raise AssertionError(f"no SUBACK for {self.topic_filter!r} within {self.timeout} s")
        if any(code.is_failure for code in self._sub_codes):
            codes = [str(code) for code in self._sub_codes]
            raise AssertionError(f"subscription to {self.topic_filter!r} refused: {codes}")

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        # Every (re)connect: the broker forgets us when it restarts.
        if not reason_code.is_failure:
            options = SubscribeOptions(qos=1, retainAsPublished=True)
            client.subscribe(self.topic_filter, options=options)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        payload = bytes(msg.payload)
        message = Received(msg.topic, payload, msg.qos, bool(msg.retain), time.monotonic())
        with self._changed:
            self._received.append(message)
            self._changed.notify_all()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        self._sub_codes = list(reason_codes)  # read only after the Event is set
        self._subscribed.set()
