"""The MQTT boundary: one paho client that reconnects in the background, with birth and will."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from satellite.config import MqttSettings
from satellite.core.backoff import Backoff
from satellite.errors import MqttError
from satellite.mqtt.connect import (
    FailedAttempts,
    apply_credentials,
    apply_tls,
    connect_failure,
    new_client,
)
from satellite.mqtt.loop import NetworkLoop
from satellite.mqtt.queue import Held, OfflineQueue, check_publish
from satellite.mqtt.takeover import OwnStatus, TakeoverWatch

_log = logging.getLogger(__name__)

MessageHandler = Callable[[str, bytes, bool], None]  # topic, payload, retained (not live)
ConnectionHandler = Callable[[bool], None]

_CONTROL_QOS = 1  # subscriptions, birth and will: must survive a reconnect
_JITTER = 0.2  # each reconnect wait is its exponential step times 1 ± this


class MqttLink:
    """A broker connection that survives outages: publish, subscribe, birth and last will.

    paho runs every callback of this class (`_on_*`) on the link's network thread (a
    NetworkLoop), and so it calls the owner's `on_message` and `on_connection_change` there:
    the owner must only hand the work over to its own thread (through its queue) and return
    quickly.

    While the link is not ready (no CONNACK and SUBACK yet on the current connection), a
    publish never reaches paho: QoS >= 1 messages wait in order in our own offline queue of
    `settings.offline_queue` messages (the oldest is dropped when it is full), QoS 0 ones
    (interims, stale the moment a newer one exists) are dropped and counted. On every
    (re)connect: subscribe, then on SUBACK hand the queue over in order, then the births, all
    under `_lock`, so a publish from another thread can only come after them. paho itself only
    ever holds what it was given while connected (QoS 1 not yet acknowledged), and resends that
    on the next CONNACK, before our SUBACK: the queue adds no copy, oldest first. (Without
    subscriptions the hand-over happens on CONNACK, just before paho's resends.)
    The session is clean: a broker that restarted and forgot us is the normal case.
    Delivery is at-least-once: a message the broker received but whose PUBACK was lost is
    resent and arrives twice, with the same payload (consumers de-duplicate on `message_id`).

    Reconnecting is ours, not paho's: the network thread tries at once, then after each failed
    attempt or lost connection waits `reconnect_min_s` doubled per failure up to
    `reconnect_max_s`, ±20 % (so satellites that lost the same broker do not knock at the same
    instant), back to the shortest once the broker accepts a connection.

    With `own_status`, the link also reads back the retained will topic (our status) on every
    connect, and a `TakeoverGuard` tells another connection using our client id from ordinary
    disconnects (see satellite.mqtt.takeover): then one ERROR, and long waits instead of a fight.
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        client_id: str,
        will: tuple[str, bytes] | None = None,
        on_message: MessageHandler | None = None,
        subscriptions: Sequence[str] = (),
        on_connection_change: ConnectionHandler | None = None,
        logger: logging.Logger = _log,
        rng: random.Random | None = None,
        own_status: OwnStatus | None = None,
    ) -> None:
        self._settings = settings
        self._address = f"{settings.host}:{settings.port}"
        self._client_id = client_id
        self._handle_message = on_message
        # Our status topic is where the will goes; read back only to know whose it is.
        self._status_topic = will[0] if will is not None and own_status is not None else None
        status = self._status_topic
        # Unless a filter covers it already (every satellite's status): one copy, not two.
        covered = status is not None and any(
            mqtt.topic_matches_sub(f, status) for f in subscriptions
        )
        watched = () if status is None or covered else (status,)
        self._subscriptions = tuple(subscriptions) + watched
        self._handle_connection_change = on_connection_change
        self._log = logger
        self._rng = rng if rng is not None else random.Random()
        # _lock guards the births, the offline queue (and its counters) and _online, and is held
        # while handing a message to paho, so that hand-overs keep the order of publish calls.
        self._lock = threading.Lock()
        self._births: dict[str, bytes] = {}
        self._queue = OfflineQueue(settings.offline_queue, logger)
        self._online = False  # hand publishes to paho (else hold them); set after the flush
        self._ready = threading.Event()  # CONNACK and SUBACK received, queue handed over
        # Only touched on the network thread:
        self._session_up = False  # CONNACK received
        self._subscribe_mid: int | None = None
        self._attempts = FailedAttempts(settings, logger)
        self._takeover = TakeoverWatch(
            client_id=client_id, own_status=own_status, rng=self._rng, log=logger
        )
        self._prepared = False
        self._started = False
        self._closed = False
        self._client = new_client(client_id, will, _CONTROL_QOS)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        backoff = Backoff(
            settings.reconnect_min_s, settings.reconnect_max_s, jitter=_JITTER, rng=self._rng
        )
        self._network = NetworkLoop(
            self._client,
            backoff,
            on_failure=self._on_connect_fail,
            log=logger,
            name=f"mqtt {client_id}",
        )

    # -- owner's side (any thread) -------------------------------------------------------

    def prepare(self) -> None:
        """Apply credentials and TLS: ConfigError if they are wrong. `start()` does it too."""
        if not self._prepared:
            apply_credentials(self._client, self._settings)
            apply_tls(self._client, self._settings)
            self._prepared = True

    def start(self) -> None:
        """Apply credentials and TLS, then connect in the background; an outage is not fatal."""
        if self._closed:
            raise MqttError("the MQTT link is closed")
        if self._started:
            return
        self.prepare()
        settings = self._settings
        # Only where to connect: the network thread connects, at once and after each wait.
        self._client.connect_async(settings.host, settings.port, keepalive=settings.keepalive_s)
        self._network.start()
        self._started = True
        self._log.info("connecting to MQTT broker %s in the background", self._address)

    @property
    def connected(self) -> bool:
        """Whether the broker accepted us and acknowledged our subscriptions."""
        return self._ready.is_set()

    @property
    def queued(self) -> int:
        """QoS >= 1 messages waiting in the offline queue now."""
        with self._lock:
            return len(self._queue)

    @property
    def dropped_qos0(self) -> int:
        """QoS 0 messages (interims) dropped because the link was not connected."""
        with self._lock:
            return self._queue.dropped_qos0

    @property
    def dropped_offline(self) -> int:
        """QoS >= 1 messages dropped (oldest first) because the offline queue was full."""
        with self._lock:
            return self._queue.dropped_offline

    def wait_connected(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for `connected`; whether it became true."""
        return self._ready.wait(timeout)

    def set_birth(self, topic: str, payload: bytes) -> None:
        """Publish `payload` retained (QoS 1) now if connected, and again on every reconnect.

        Calling it again for the same topic replaces the payload a reconnect re-publishes.
        While offline it is only remembered: the reconnect sends the latest payload once.
        """
        check_publish(topic, payload, _CONTROL_QOS)
        with self._lock:
            self._births[topic] = payload
            if self._online:
                self._hand_over(topic, payload, _CONTROL_QOS, True)

    def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool = False) -> None:
        """Send now, or (QoS >= 1) queue until reconnected; QoS 0 while offline is dropped."""
        self._send(topic, payload, qos, retain)

    def publish_wait(
        self, topic: str, payload: bytes, *, qos: int, retain: bool = False, timeout: float
    ) -> bool:
        """Publish and wait up to `timeout` s until written (QoS 0) or acknowledged (QoS 1).

        False when that did not happen in time; a QoS 1 message then stays queued.
        Never call it from `on_message`: the network thread would be waiting on itself.
        """
        info = self._send(topic, payload, qos, retain)
        if info is None or info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return False
        try:
            info.wait_for_publish(timeout)
            return info.is_published()
        except (RuntimeError, ValueError):  # lost with the connection while waiting
            return False

    def _send(
        self, topic: str, payload: bytes, qos: int, retain: bool
    ) -> mqtt.MQTTMessageInfo | None:
        """Hand over to paho when online (its info), else hold or drop the message (None)."""
        check_publish(topic, payload, qos)
        with self._lock:
            if not self._online:
                self._queue.hold(Held(topic, payload, qos, retain))
                return None
            info = self._hand_over(topic, payload, qos, retain)
            if qos == 0 and info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
                self._queue.dropped_qos0 += 1  # the socket died before paho told us
            return info

    def _hand_over(
        self, topic: str, payload: bytes, qos: int, retain: bool
    ) -> mqtt.MQTTMessageInfo:
        # Called with _lock held; check_publish already ran, so paho has nothing to refuse.
        try:
            return self._client.publish(topic, payload, qos=qos, retain=retain)
        except ValueError as exc:
            raise MqttError(f"cannot publish to {topic!r}: {exc}") from exc

    def take_queue(self) -> list[Held]:
        """Remove and return the messages waiting in the offline queue, oldest first (for the
        link that replaces this one on a reload: see `adopt`)."""
        with self._lock:
            return self._queue.take()

    def adopt(self, held: Sequence[Held]) -> None:
        """Queue messages taken from the link this one replaces, ahead of any queued here.

        Call it before `start()`: then they go out first, in order, on the first connection.
        """
        with self._lock:
            if self._online:  # too late to go first: send now, after what was already sent
                for message in held:
                    self._hand_over(message.topic, message.payload, message.qos, message.retain)
                return
            self._queue.adopt(held)

    def close(self) -> None:
        """Disconnect cleanly (so the broker does not send the will), stop the network thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._online = False  # later publishes are held, never handed to a stopped paho
        if not self._started:
            return
        self._network.stop()
        self._ready.clear()
        self._log.info("MQTT link to %s closed", self._address)

    def __enter__(self) -> MqttLink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- the network thread (paho's callbacks) -----------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self._note_failure(f"refused: {reason_code}")
            return
        if self._closed:
            client.disconnect()
            return
        self._session_up = True
        self._takeover.accepted()
        retried = self._attempts.over()
        self._log.info("connected to MQTT broker %s (%s)%s", self._address, reason_code, retried)
        self._network.accepted()
        if not self._subscriptions:
            self._become_ready()
            return
        _, self._subscribe_mid = client.subscribe([(f, _CONTROL_QOS) for f in self._subscriptions])

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if mid != self._subscribe_mid:
            return
        for topic_filter, code in zip(self._subscriptions, reason_codes, strict=False):
            if code.is_failure:
                self._log.warning("broker refused subscription %s (%s)", topic_filter, code)
        self._become_ready()

    def _become_ready(self) -> None:
        # After SUBACK: whoever sees a birth knows our subscriptions are active. Under the lock,
        # so a publish from another thread waits until the queue and the births are handed over.
        with self._lock:
            if self._closed:
                return
            held = self._queue.take()
            for message in held:
                self._hand_over(message.topic, message.payload, message.qos, message.retain)
            for topic, payload in self._births.items():
                self._hand_over(topic, payload, _CONTROL_QOS, True)
            self._online = True
            self._ready.set()
            interims, evicted = self._queue.outage_drops()
        if held or interims or evicted:
            self._log.info(
                "sent %d messages queued while offline (dropped: %d interims, %d oldest queued)",
                len(held),
                interims,
                evicted,
            )
        self._notify(True)

    def _on_connect_fail(self, exc: OSError) -> None:
        self._note_failure(connect_failure(exc, self._settings))

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._lock:
            was_ready, self._online = self._online, False
            self._ready.clear()
            if was_ready:
                self._queue.outage_began()
        if self._session_up:
            self._session_up = False
            lost = reason_code.is_failure and not flags.is_disconnect_packet_from_server
            reason = f"connection lost: {reason_code}" if lost else str(reason_code)
            self._log.info("disconnected from MQTT broker %s (%s)", self._address, reason)
            if not self._closed and (long_wait_s := self._takeover.lost()) is not None:
                self._network.wait_long(long_wait_s)
        if was_ready:
            self._notify(False)

    def _note_failure(self, reason: str) -> None:
        self._attempts.failed(reason)
        self._takeover.failed()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if self._status_topic is not None and message.topic == self._status_topic:
            # Only the copy the broker hands over on subscribing (retain flag set) says who was
            # here while we were away; live copies are our own births coming back.
            if message.retain:
                self._takeover.retained(message.topic, bytes(message.payload))
            return
        if self._handle_message is None:
            return
        topic = "?"
        try:
            topic = message.topic
            # The RETAIN flag is set only on a stored message sent because we subscribed.
            self._handle_message(topic, bytes(message.payload), bool(message.retain))
        except Exception:  # an exception here would cost the connection (see NetworkLoop)
            self._log.exception("on_message failed for a message on %r", topic)

    def _notify(self, connected: bool) -> None:
        if self._handle_connection_change is None:
            return
        try:
            self._handle_connection_change(connected)
        except Exception:
            self._log.exception("on_connection_change(%s) failed", connected)
