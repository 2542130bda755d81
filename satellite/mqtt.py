"""The MQTT boundary: one paho client that reconnects in the background, with birth and will."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from satellite.config import MqttSettings
from satellite.errors import ConfigError, MqttError

_log = logging.getLogger(__name__)

MessageHandler = Callable[[str, bytes], None]
ConnectionHandler = Callable[[bool], None]

_CONTROL_QOS = 1  # subscriptions, birth and will: must survive a reconnect


class MqttLink:
    """A broker connection that survives outages: publish, subscribe, birth and last will.

    paho runs every callback of this class (`_on_*`) on its own network thread, and so it
    calls the owner's `on_message` and `on_connection_change` there: the owner must only
    hand the work over to its own thread (through its queue) and return quickly.
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
    ) -> None:
        self._settings = settings
        self._address = f"{settings.host}:{settings.port}"
        self._handle_message = on_message
        self._subscriptions = tuple(subscriptions)
        self._handle_connection_change = on_connection_change
        self._log = logger
        self._lock = threading.Lock()
        self._births: dict[str, bytes] = {}
        self._ready = threading.Event()  # CONNACK and SUBACK received
        self._session_up = False  # CONNACK received; only touched on paho's thread
        self._subscribe_mid: int | None = None
        self._last_failure: str | None = None
        self._failed_attempts = 0
        self._started = False
        self._closed = False
        self.dropped_qos0 = 0
        """QoS 0 messages dropped because the broker was unreachable."""
        self._client = self._new_client(client_id, will)

    def _new_client(self, client_id: str, will: tuple[str, bytes] | None) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311
        )
        if will is not None:
            try:
                client.will_set(will[0], will[1], qos=_CONTROL_QOS, retain=True)
            except ValueError as exc:
                raise MqttError(f"invalid last will on {will[0]!r}: {exc}") from exc
        # paho's hints say int, but its backoff is plain float arithmetic.
        client.reconnect_delay_set(
            self._settings.reconnect_min_s,  # type: ignore[arg-type]
            self._settings.reconnect_max_s,  # type: ignore[arg-type]
        )
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    # -- owner's side (any thread) -------------------------------------------------------

    def start(self) -> None:
        """Apply credentials and TLS, then connect in the background; an outage is not fatal."""
        if self._closed:
            raise MqttError("the MQTT link is closed")
        if self._started:
            return
        self._configure_credentials()
        self._configure_tls()
        settings = self._settings
        self._client.connect_async(settings.host, settings.port, keepalive=settings.keepalive_s)
        self._client.loop_start()
        self._started = True
        self._log.info("connecting to MQTT broker %s in the background", self._address)

    def _configure_credentials(self) -> None:
        password = self._settings.read_password()
        username = self._settings.username
        if username is None:
            if password is not None:
                raise ConfigError("mqtt.password_file is set but mqtt.username is not")
            return
        self._client.username_pw_set(username, password)

    def _configure_tls(self) -> None:
        if not self._settings.tls:
            return
        ca_file = self._settings.ca_file
        try:
            self._client.tls_set(ca_certs=None if ca_file is None else str(ca_file))
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            where = f"mqtt.ca_file {ca_file}" if ca_file else "the system CA certificates"
            # A ConfigError, not an MqttError: it never heals, so the CLI exits 78.
            raise ConfigError(f"cannot set up TLS with {where}: {exc}") from exc

    @property
    def connected(self) -> bool:
        """Whether the broker accepted us and acknowledged our subscriptions."""
        return self._ready.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for `connected`; whether it became true."""
        return self._ready.wait(timeout)

    def set_birth(self, topic: str, payload: bytes) -> None:
        """Publish `payload` retained (QoS 1) now if connected, and again on every reconnect.

        Calling it again for the same topic replaces the payload a reconnect re-publishes.
        """
        with self._lock:
            self._births[topic] = payload
        if self._ready.is_set():
            self.publish(topic, payload, qos=_CONTROL_QOS, retain=True)

    def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool = False) -> None:
        """Send now, or (QoS >= 1) queue until reconnected; QoS 0 while offline is dropped."""
        self._send(topic, payload, qos, retain)

    def publish_wait(
        self, topic: str, payload: bytes, *, qos: int, retain: bool = False, timeout: float
    ) -> bool:
        """Publish and wait up to `timeout` s until written (QoS 0) or acknowledged (QoS 1).

        False when that did not happen in time; a QoS 1 message then stays queued.
        Never call it from `on_message`: paho's thread would be waiting on itself.
        """
        info = self._send(topic, payload, qos, retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return False
        try:
            info.wait_for_publish(timeout)
            return info.is_published()
        except (RuntimeError, ValueError):  # lost with the connection while waiting
            return False

    def _send(self, topic: str, payload: bytes, qos: int, retain: bool) -> mqtt.MQTTMessageInfo:
        try:
            info = self._client.publish(topic, payload, qos=qos, retain=retain)
        except ValueError as exc:
            raise MqttError(f"cannot publish to {topic!r}: {exc}") from exc
        if qos == 0 and info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            with self._lock:
                self.dropped_qos0 += 1
        return info

    def close(self) -> None:
        """Disconnect cleanly (so the broker does not send the will) and stop paho's thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if not self._started:
            return
        self._client.disconnect()
        self._client.loop_stop()
        if self._client.socket() is not None:
            # A reconnect raced with disconnect(): end that session cleanly too.
            self._client.disconnect()
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

    # -- paho's network thread -----------------------------------------------------------

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
        attempts = self._failed_attempts
        retried = f" after {attempts} failed attempts" if attempts else ""
        self._log.info("connected to MQTT broker %s (%s)%s", self._address, reason_code, retried)
        self._failed_attempts, self._last_failure = 0, None
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
        # Births go out after SUBACK, so whoever sees one knows our subscriptions are active.
        self._ready.set()
        with self._lock:
            births = list(self._births.items())
        for topic, payload in births:
            self.publish(topic, payload, qos=_CONTROL_QOS, retain=True)
        self._notify(True)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._note_failure("unreachable")

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        was_ready = self._ready.is_set()
        self._ready.clear()
        if self._session_up:
            self._session_up = False
            lost = reason_code.is_failure and not flags.is_disconnect_packet_from_server
            reason = f"connection lost: {reason_code}" if lost else str(reason_code)
            self._log.info("disconnected from MQTT broker %s (%s)", self._address, reason)
        if was_ready:
            self._notify(False)

    def _note_failure(self, reason: str) -> None:
        # One line per outage (and per change of reason), never one per retry.
        self._failed_attempts += 1
        if reason == self._last_failure:
            return
        self._last_failure = reason
        self._log.warning(
            "MQTT broker %s %s; retrying in the background (every %g-%g s)",
            self._address,
            reason,
            self._settings.reconnect_min_s,
            self._settings.reconnect_max_s,
        )

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if self._handle_message is None:
            return
        topic = "?"
        try:
            topic = message.topic
            self._handle_message(topic, bytes(message.payload))
        except Exception:  # an exception here would end paho's thread, and with it the link
            self._log.exception("on_message failed for a message on %r", topic)

    def _notify(self, connected: bool) -> None:
        if self._handle_connection_change is None:
            return
        try:
            self._handle_connection_change(connected)
        except Exception:
            self._log.exception("on_connection_change(%s) failed", connected)
