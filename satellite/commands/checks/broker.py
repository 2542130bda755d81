"""The broker check: reachable, the login accepted, a round trip on the status topic."""

from __future__ import annotations

import json
import ssl
import time

from satellite.commands.checks.bounded import in_thread
from satellite.commands.checks.result import Result, failed, passed
from satellite.config import Settings
from satellite.errors import ConfigError
from satellite.mqtt.probe import BrokerProbe, Reason

BROKER_TIMEOUT_S = 3.0
RETAINED_WAIT_S = 0.5  # a broker sends retained messages right after SUBACK
# At most 7 answers are awaited (2 connects and CONNACKs with the 3.1.1 fallback, SUBACK,
# PUBACK, the echo) plus the retained wait; a check still waiting after 10 has hung.
_DEADLINE_WAITS = 10
_ACL_EXAMPLE = "firmware-config/mosquitto/acl.example"

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
        probe = _probe(settings, password, mqtt5=True, timeout=timeout)
    except (ConfigError, OSError, ValueError) as exc:
        return [failed("broker login", str(exc), "fix [mqtt] password_file / ca_file")]
    try:
        code = probe.connect()
        if code is not None and code.is_failure and code.value in _UNSUPPORTED_PROTOCOL:
            probe.close()
            probe = _probe(settings, password, mqtt5=False, timeout=timeout)
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


def _probe(settings: Settings, password: str | None, *, mqtt5: bool, timeout: float) -> BrokerProbe:
    from satellite.runtime.engines import client_id  # loads the engines' modules: not for --help

    return BrokerProbe(
        settings.mqtt,
        client_id=client_id(settings) + "-check",
        password=password,
        mqtt5=mqtt5,
        timeout=timeout,
    )


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


def _login_result(settings: Settings, code: Reason | None) -> Result:
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
    from satellite.mqtt.outbound import build_outbox  # numpy (the core): not for --help

    topic = build_outbox(settings).status_topics()[0]
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
