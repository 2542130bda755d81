"""NetworkLoop with a stand-in paho client: when it connects, waits, gives up a wait, stops.

The real paho client and a real broker are in tests/test_mqtt.py; here a small fake makes the
failures happen on cue, fast and offline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import MQTTErrorCode

from satellite.core.backoff import Backoff
from satellite.mqtt.loop import NetworkLoop

WAIT = 5.0


class FakeClient:
    """What NetworkLoop uses of paho's Client. `script`: per attempt, "refuse", "serve" (until
    disconnect()) or "crash" (loop() raises, as a bug in a callback would)."""

    def __init__(self, *script: str) -> None:
        self.script = list(script)
        self.on_socket_register_write: Any = None
        self.attempts: list[float] = []
        self.calls: list[str] = []
        self.serving = threading.Event()
        self._sock: object | None = None
        self._action = ""
        self._wake = threading.Event()

    def reconnect(self) -> MQTTErrorCode:
        self.attempts.append(time.monotonic())
        self._action = self.script.pop(0) if self.script else "refuse"
        if self._action == "refuse":
            raise ConnectionRefusedError(111, "Connection refused")
        self._sock = object()
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def loop(self, timeout: float) -> MQTTErrorCode:
        if self._action == "crash":
            raise RuntimeError("a bug in on_connect")
        self.serving.set()
        self._wake.wait(timeout)
        return MQTTErrorCode.MQTT_ERR_SUCCESS if self._sock else MQTTErrorCode.MQTT_ERR_NO_CONN

    def disconnect(self) -> MQTTErrorCode:
        self.calls.append("disconnect")
        self._sock = None  # as if the loop had sent DISCONNECT
        self._wake.set()
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def socket(self) -> object | None:
        return self._sock

    def loop_write(self) -> MQTTErrorCode:
        self.calls.append("loop_write")
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _reset_sockets(self) -> None:
        self.calls.append("_reset_sockets")


def network(
    client: FakeClient,
    backoff: Backoff,
    on_failure: Callable[[OSError], None] = lambda exc: None,
) -> NetworkLoop:
    log = logging.getLogger("satellite.mqtt.link.test")
    real = cast(mqtt.Client, client)
    return NetworkLoop(real, backoff, on_failure=on_failure, log=log, name="mqtt test")


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"not within {WAIT} s: {what}"
        time.sleep(0.005)  # polling interval, bounded by the deadline


def test_failed_attempts_report_their_exception_and_wait_the_backoff_between() -> None:
    client, failures = FakeClient(), list[OSError]()
    loop = network(client, Backoff(0.05, 0.1), failures.append)
    loop.start()
    wait_until(lambda: len(client.attempts) >= 4, "four attempts")
    loop.stop()
    assert all(isinstance(f, ConnectionRefusedError) for f in failures)
    assert len(failures) == len(client.attempts)
    gaps = [b - a for a, b in zip(client.attempts, client.attempts[1:4], strict=False)]
    assert all(gap >= wait - 0.005 for gap, wait in zip(gaps, [0.05, 0.1, 0.1], strict=True))


def test_wait_long_replaces_the_next_wait_only() -> None:
    client = FakeClient()
    loop = network(client, Backoff(0.01, 0.01))
    loop.wait_long(0.3)  # as the takeover watch does after a kick
    loop.start()
    wait_until(lambda: len(client.attempts) >= 3, "three attempts")
    loop.stop()
    first, second, third = client.attempts[:3]
    assert second - first >= 0.3 - 0.005
    assert third - second < 0.25, "the long wait was used twice"


def test_accepted_makes_the_next_wait_the_shortest_again() -> None:
    backoff = Backoff(1.0, 60.0)
    loop = network(FakeClient(), backoff)
    for _ in range(4):
        backoff.next()
    loop.accepted()
    assert backoff.next() == 1.0


def test_a_bug_in_a_callback_is_logged_and_the_link_reconnects(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = FakeClient("crash", "serve")
    loop = network(client, Backoff(0.01, 0.01))
    loop.start()
    assert client.serving.wait(WAIT), "no second connection after the bug"
    loop.stop()
    failed = [r for r in caplog.records if r.exc_info and "network loop failed" in r.message]
    assert len(failed) == 1


def test_stop_disconnects_the_connection_and_releases_thread_and_sockets() -> None:
    client = FakeClient("serve")
    loop = network(client, Backoff(0.01, 0.01))
    loop.start()
    assert client.serving.wait(WAIT)
    loop.stop()
    assert client.calls == ["disconnect", "_reset_sockets"]
    assert client.on_socket_register_write is not None, "paho would write on other threads"
    assert not any(t.name == "mqtt test" for t in threading.enumerate())


def test_stop_cuts_a_long_wait_short() -> None:
    client = FakeClient()
    loop = network(client, Backoff(30.0, 60.0))
    loop.start()
    wait_until(lambda: len(client.attempts) == 1, "the first attempt")
    began = time.monotonic()
    loop.stop()
    assert time.monotonic() - began < 1.0
    assert len(client.attempts) == 1


def test_stop_before_start_only_releases_the_sockets() -> None:
    client = FakeClient()
    network(client, Backoff(1.0, 1.0)).stop()
    assert client.calls == ["_reset_sockets"]
