"""The broker check: reachable, the login accepted, a round trip on the status topic."""

from __future__ import annotations

import json
import queue
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from satellite.commands.checks.bounded import in_thread
from satellite.commands.checks.result import Result, failed, passed
from satellite.config import Settings
from satellite.errors import ConfigError
from satellite.mqtt.topics import SatelliteTopic, Topics

if TYPE_CHECKING:  # paho loads when the probe needs it: `satellite --help` stays fast
    import paho.mqtt.client as mqtt
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

BROKER_TIMEOUT_S = 3.0
RETAINED_WAIT_S = 0.5  # a broker sends retained messages right after SUBACK
# At most 7 answers are awaited (2 connects and CONNACKs with the 3.1.1 fallback, SUBACK,
# PUBACK, the echo) plus the retained wait; a check still waiting after 10 has hung.
_DEADLINE_WAITS = 10
_ACL_EXAMPLE = "firmware-config/mosquitto/acl.example"


@dataclass(frozen=True)
class _Message:
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
        settings: Settings,
        *,
        password: str | None,
        mqtt5: bool = True,
        timeout: float = BROKER_TIMEOUT_S,
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.settings = settings.mqtt
        self.mqtt5 = mqtt5
        self.timeout = timeout
        self.messages: list[_Message] = []
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        from satellite.runtime.engines import client_id

        # Not the daemon's client id: the broker would disconnect the running satellite.
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id(settings) + "-check",
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

    def connect(self) -> ReasonCode | None:
        """The CONNACK's reason code, None when none came; OSError when unreachable."""
        self._client.connect(self.settings.host, self.settings.port, keepalive=30)
        self._client.loop_start()
        code: ReasonCode | None = self._wait("connack")
        return code

    def subscribe(self, topic: str) -> ReasonCode | None:
        """The SUBACK's code for `topic` (retained messages keep their flag, MQTT 5)."""
        from paho.mqtt.subscribeoptions import SubscribeOptions

        if self.mqtt5:
            self._client.subscribe(topic, options=SubscribeOptions(qos=1, retainAsPublished=True))
        else:
            self._client.subscribe(topic, qos=1)
        codes: list[ReasonCode] | None = self._wait("suback")
        return codes[0] if codes else None

    def publish(self, topic: str, payload: bytes) -> ReasonCode | None:
        """Publish (QoS 1, not retained); the PUBACK's reason code (always success in 3.1.1)."""
        self._client.publish(topic, payload, qos=1, retain=False)
        code: ReasonCode | None = self._wait("puback")
        return code

    def message(self, match: Callable[[_Message], bool], timeout: float) -> _Message | None:
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
        message = _Message(bytes(msg.payload), bool(msg.retain), time.monotonic())
        self._events.put(("message", message))


_UNSUPPORTED_PROTOCOL = (1, 132)  # 3.1.1's and 5's CONNACK codes for "no MQTT 5 here"


def check_broker(settings: Settings, *, timeout: float = BROKER_TIMEOUT_S) -> list[Result]:
    """Reachable, the login accepted, and a round trip on this satellite's own status topic.

    Each answer is awaited `timeout` s, and the whole within `_DEADLINE_WAITS` times that: a
    name lookup (paho's connect) has no timeout of its own."""
    deadline = _DEADLINE_WAITS * timeout
    return in_thread(
        lambda: _check_broker(settings, timeout),
        timeout=deadline,
        on_timeout=lambda: [_no_answer(settings, deadline)],
    )


def _no_answer(settings: Settings, waited: float) -> Result:
    host = settings.mqtt.host
    detail = f"{host}:{settings.mqtt.port}: no result in {waited:g} s (looking up {host} hangs?)"
    fix = f"`getent hosts {host}` must answer at once: fix DNS, or put the broker in /etc/hosts"
    return failed("broker reachable", detail, fix)


def _check_broker(settings: Settings, timeout: float) -> list[Result]:
    address = f"{settings.mqtt.host}:{settings.mqtt.port}"
    try:
        password = settings.mqtt.read_password()
        probe = BrokerProbe(settings, password=password, timeout=timeout)
    except (ConfigError, OSError, ValueError) as exc:
        return [failed("broker login", str(exc), "fix [mqtt] password_file / ca_file")]
    try:
        code = probe.connect()
        if code is not None and code.is_failure and code.value in _UNSUPPORTED_PROTOCOL:
            probe.close()
            probe = BrokerProbe(settings, password=password, mqtt5=False, timeout=timeout)
            code = probe.connect()
    except OSError as exc:
        return [_unreachable(address, exc)]
    try:
        results = [passed("broker reachable", f"{address} (MQTT {_version(probe)})")]
        login = _login_result(settings, code)
        results.append(login)
        if login.ok:
            results.append(_round_trip(settings, probe, timeout))
        return results
    finally:
        probe.close()


def _version(probe: BrokerProbe) -> str:
    return "5" if probe.mqtt5 else "3.1.1"


def _unreachable(address: str, exc: OSError) -> Result:
    if isinstance(exc, ssl.SSLError):
        fix = "check [mqtt] ca_file, and that the broker's certificate names [mqtt] host"
        return failed("broker reachable", f"TLS with {address} failed: {exc}", fix)
    fix = (
        "start the broker (systemctl status mosquitto) or correct [mqtt] host and port; "
        "a firewall may drop the port"
    )
    return failed("broker reachable", f"{address}: {exc.strerror or exc}", fix)


def _login_result(settings: Settings, code: ReasonCode | None) -> Result:
    user = settings.mqtt.username
    who = f"user {user!r}" if user else "anonymous"
    if code is None:
        fix = "is [mqtt] port an MQTT listener (and tls set as the listener wants)?"
        return failed("broker login", "no answer (CONNACK) to the connect", fix)
    if not code.is_failure:
        return passed("broker login", f"{who} accepted")
    if user is None:
        fix = "the broker wants a login: set [mqtt] username and password_file"
    else:
        fix = (
            f"check [mqtt] username and the password in {settings.mqtt.password_file}; "
            f"on the broker: mosquitto_passwd <password file> {user}"
        )
    return failed("broker login", f"{who} refused: {code}", fix)


def _round_trip(settings: Settings, probe: BrokerProbe, timeout: float) -> Result:
    """Read back our own publish on the status topic.

    What is published: a non-retained copy of the retained status when there is one, so a
    dashboard sees the same status again and the retained one is untouched; else a
    `{"check": true}` object, which is no valid status and so ignored by validating readers.
    """
    topics = Topics(
        room_id=settings.room_id, satellite_id=settings.satellite_id, mqtt=settings.mqtt
    )
    topic = topics.satellite(SatelliteTopic.STATUS)[0]
    user = settings.mqtt.username or "(anonymous)"
    fix = (
        f"in the broker's acl_file, give user {user} `topic readwrite {topic}` "
        f"(see {_ACL_EXAMPLE}) and reload the broker"
    )
    name = "broker round trip"
    code = probe.subscribe(topic)
    if code is None or code.is_failure:
        return failed(name, f"ACL denied: subscribing to {topic} refused ({code})", fix)
    retained = probe.message(lambda m: m.retain, RETAINED_WAIT_S)
    payload = retained.payload if retained else _check_payload(settings)
    sent = time.monotonic()
    code = probe.publish(topic, payload)
    if code is not None and code.is_failure:
        return failed(name, f"ACL denied: publishing to {topic} refused ({code})", fix)
    echo = probe.message(lambda m: m.at >= sent and not m.retain and m.payload == payload, timeout)
    if echo is None:
        accepted = probe.mqtt5 and code is not None
        why = f"the ACL lets {user} write it but not read it?" if accepted else "ACL?"
        detail = f"publish to {topic} not delivered back within {timeout:g} s: {why}"
        return failed(name, detail, fix)
    took = round((echo.at - sent) * 1000)
    return passed(name, f"published to {topic} and read it back in {took} ms", topic=topic)


def _check_payload(settings: Settings) -> bytes:
    body = {"check": True, "satellite_id": settings.satellite_id, "timestamp": time.time_ns()}
    return json.dumps(body).encode()
