"""MqttLink against a real mosquitto: QoS, retain, subscriptions, outages, birth and will."""

from __future__ import annotations

import itertools
import logging
import os
import queue
import random
import select
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from satellite.config import MqttSettings
from satellite.core.backoff import Backoff
from satellite.errors import ConfigError, MqttError
from satellite.mqtt.link import MqttLink
from tests.support.broker import Broker, free_port
from tests.support.mqtt_probe import Probe, Received

ROOT = Path(__file__).resolve().parents[1]
STATUS = "v1/voice_assistant/room/kitchen/satellite/sat1/status"
COMMAND = "v1/voice_assistant/room/kitchen/satellite/sat1/command"
STATE = "v1/voice_assistant/room/kitchen/session/s1/state"
WAIT = 10.0  # upper bound for anything that should happen "soon"


def settings_for(host: str, port: int, **overrides: object) -> MqttSettings:
    fast = {"keepalive_s": 5, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5}
    return MqttSettings.model_validate({"host": host, "port": port, **fast, **overrides})


def on_topic(topic: str) -> Callable[[Received], bool]:
    return lambda m: m.topic == topic


def inbox() -> tuple[queue.Queue[tuple[str, bytes]], Callable[[str, bytes, bool], None]]:
    received: queue.Queue[tuple[str, bytes]] = queue.Queue()
    return received, lambda topic, payload, retained: received.put((topic, payload))


@pytest.mark.integration
def test_publish_qos0_and_qos1_arrive_with_their_qos_and_retain_flag(broker: Broker) -> None:
    with (
        Probe(broker.host, broker.port, "v1/#") as probe,
        MqttLink(settings_for(broker.host, broker.port), client_id="sat-qos") as link,
    ):
        link.start()
        assert link.wait_connected(WAIT)
        link.publish(STATE, b"zero", qos=0)
        link.publish(STATE, b"one", qos=1)
        link.publish(STATUS, b"kept", qos=1, retain=True)
        zero, one, kept = probe.wait_count(3, WAIT)
    assert (zero.payload, zero.qos, zero.retain) == (b"zero", 0, False)
    assert (one.payload, one.qos, one.retain) == (b"one", 1, False)
    assert (kept.payload, kept.qos, kept.retain) == (b"kept", 1, True)


@pytest.mark.integration
def test_publish_wait_confirms_a_retained_message_for_later_subscribers(broker: Broker) -> None:
    with MqttLink(settings_for(broker.host, broker.port), client_id="sat-retain") as link:
        link.start()
        assert link.wait_connected(WAIT)
        assert link.publish_wait(STATUS, b"online", qos=1, retain=True, timeout=WAIT)
    with Probe(broker.host, broker.port, STATUS) as later:
        message = later.wait_for(on_topic(STATUS), WAIT)
    assert (message.payload, message.retain) == (b"online", True)


@pytest.mark.integration
def test_subscriptions_deliver_inbound_messages_to_on_message(broker: Broker) -> None:
    received, on_message = inbox()
    link = MqttLink(
        settings_for(broker.host, broker.port),
        client_id="sat-sub",
        subscriptions=[COMMAND, "v1/voice_assistant/room/kitchen/session/+/state"],
        on_message=on_message,
    )
    with link, Probe(broker.host, broker.port, "unused") as sender:
        link.start()
        assert link.wait_connected(WAIT)
        sender.publish(COMMAND, b'{"command": "mute"}')
        sender.publish(STATE, b'{"state": "processing"}')
        got = [received.get(timeout=WAIT), received.get(timeout=WAIT)]
    assert got == [(COMMAND, b'{"command": "mute"}'), (STATE, b'{"state": "processing"}')]


@pytest.mark.integration
def test_on_message_says_retained_only_for_a_stored_message_sent_on_subscribe(
    broker: Broker,
) -> None:
    received: queue.Queue[tuple[bytes, bool]] = queue.Queue()
    link = MqttLink(
        settings_for(broker.host, broker.port),
        client_id="sat-retained",
        subscriptions=[COMMAND],
        on_message=lambda topic, payload, retained: received.put((payload, retained)),
    )
    with Probe(broker.host, broker.port, "unused") as sender, link:
        sender.publish(COMMAND, b"stored", retain=True)
        link.start()
        assert link.wait_connected(WAIT)
        assert received.get(timeout=WAIT) == (b"stored", True)
        sender.publish(COMMAND, b"live and retained", retain=True)
        assert received.get(timeout=WAIT) == (b"live and retained", False)
        sender.publish(COMMAND, b"", retain=True)  # clearing it reaches subscribers too
        assert received.get(timeout=WAIT) == (b"", False)


@pytest.mark.integration
def test_broker_down_at_start_connects_once_it_is_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="satellite.mqtt.link")
    broker = Broker(tmp_path / "broker", port=free_port())
    with MqttLink(settings_for(broker.host, broker.port), client_id="sat-late") as link:
        link.start()
        assert not link.wait_connected(0.5)
        link.publish(STATE, b"lost", qos=0)
        link.publish(STATUS, b"queued", qos=1, retain=True)
        assert link.dropped_qos0 == 1
        with broker:
            assert link.wait_connected(WAIT)
            with Probe(broker.host, broker.port, "v1/#") as probe:
                queued = probe.wait_for(on_topic(STATUS), WAIT)
                link.publish(STATE, b"after", qos=1)
                probe.wait_for(lambda m: m.payload == b"after", WAIT)
                assert all(m.payload != b"lost" for m in probe.received())
    assert (queued.payload, queued.retain) == (b"queued", True)
    assert not any(record.exc_info for record in caplog.records)
    assert "Traceback" not in caplog.text
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, "one line for the outage, not one per retry"
    assert "unreachable: Connection refused; retrying" in warnings[0].getMessage()


@pytest.mark.integration
def test_broker_restart_reconnects_resubscribes_and_republishes_birth(broker: Broker) -> None:
    received, on_message = inbox()
    changes: queue.Queue[bool] = queue.Queue()
    link = MqttLink(
        settings_for(broker.host, broker.port),
        client_id="sat-restart",
        subscriptions=[COMMAND],
        on_message=on_message,
        on_connection_change=changes.put,
    )
    with link:
        link.set_birth(STATUS, b'{"online": true}')
        link.start()
        assert changes.get(timeout=WAIT) is True
        broker.stop()
        assert changes.get(timeout=WAIT) is False
        broker.start()  # persistence is off: the retained birth is gone with the old broker
        started = time.monotonic()
        assert changes.get(timeout=WAIT) is True
        reconnect_s = time.monotonic() - started
        with Probe(broker.host, broker.port, "v1/#") as probe:
            birth = probe.wait_for(on_topic(STATUS), WAIT)
            probe.publish(COMMAND, b"after-restart")
            assert received.get(timeout=WAIT) == (COMMAND, b"after-restart")
    assert (birth.payload, birth.retain) == (b'{"online": true}', True)
    assert reconnect_s < 2.0


WILL_CHILD = textwrap.dedent(
    """
    import sys, time
    from satellite.config import MqttSettings
    from satellite.mqtt.link import MqttLink

    port, topic = int(sys.argv[1]), sys.argv[2]
    settings = MqttSettings(host="127.0.0.1", port=port, keepalive_s=5)
    link = MqttLink(settings, client_id="sat-will", will=(topic, b'{"online": false}'))
    link.set_birth(topic, b'{"online": true}')
    link.start()
    print("ready" if link.wait_connected(10) else "timeout", flush=True)
    time.sleep(60)
    """
)


def read_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    return process.stdout.readline().strip() if ready else ""


@pytest.mark.integration
def test_last_will_is_retained_when_the_process_dies(broker: Broker, tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(WILL_CHILD)
    command = [sys.executable, str(script), str(broker.port), STATUS]
    with (
        Probe(broker.host, broker.port, STATUS) as probe,
        subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as child,
    ):
        try:
            assert read_line(child, WAIT) == "ready"
            probe.wait_for(lambda m: m.payload == b'{"online": true}', WAIT)
        finally:
            child.kill()
            child.wait(WAIT)
        probe.wait_for(lambda m: m.payload == b'{"online": false}', WAIT)
    with Probe(broker.host, broker.port, STATUS) as later:
        will = later.wait_for(on_topic(STATUS), WAIT)
    assert (will.payload, will.retain) == (b'{"online": false}', True)


@pytest.mark.integration
def test_clean_close_does_not_send_the_will(broker: Broker) -> None:
    settings = settings_for(broker.host, broker.port)
    with Probe(broker.host, broker.port, STATUS) as probe:
        link = MqttLink(settings, client_id="sat-bye", will=(STATUS, b'{"online": false}'))
        with link:
            link.start()
            assert link.wait_connected(WAIT)
        assert not link.connected
        with pytest.raises(AssertionError):
            probe.wait_for(on_topic(STATUS), 1.0)


@pytest.mark.integration
def test_on_message_that_raises_does_not_stop_later_messages(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    received, record = inbox()

    def on_message(topic: str, payload: bytes, retained: bool) -> None:
        if payload == b"boom":
            raise ValueError("bad handler")
        record(topic, payload, retained)

    link = MqttLink(
        settings_for(broker.host, broker.port),
        client_id="sat-raise",
        subscriptions=[COMMAND],
        on_message=on_message,
    )
    with link, Probe(broker.host, broker.port, "unused") as sender:
        link.start()
        assert link.wait_connected(WAIT)
        sender.publish(COMMAND, b"boom")
        sender.publish(COMMAND, b"fine")
        assert received.get(timeout=WAIT) == (COMMAND, b"fine")
        assert link.connected
    failures = [r for r in caplog.records if r.name == "satellite.mqtt.link" and r.exc_info]
    assert len(failures) == 1


def test_publish_never_raises_while_disconnected(tmp_path: Path) -> None:
    with MqttLink(settings_for("127.0.0.1", free_port()), client_id="sat-offline") as link:
        link.publish(STATE, b"before-start", qos=0)
        link.start()
        link.publish(STATE, b"offline", qos=0)
        link.publish(STATE, b"offline", qos=1)
        assert not link.publish_wait(STATUS, b"x", qos=1, retain=True, timeout=0.1)
    assert link.dropped_qos0 == 2
    assert not link.connected


@pytest.mark.integration
def test_refused_connection_is_retried_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="satellite.mqtt.link")
    with Broker(tmp_path / "broker", extra_config="allow_anonymous false") as strict:
        settings = settings_for(strict.host, strict.port, username="nobody")
        with MqttLink(settings, client_id="sat-refused") as link:
            link.start()
            assert not link.wait_connected(1.0)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "refused" in warnings[0]
    assert "Traceback" not in caplog.text


def test_invalid_topic_is_an_mqtt_error() -> None:
    with (
        MqttLink(settings_for("127.0.0.1", free_port()), client_id="sat-topic") as link,
        pytest.raises(MqttError, match="cannot publish"),
    ):
        link.publish("v1/#", b"x", qos=1)


def test_unreadable_password_file_fails_start(tmp_path: Path) -> None:
    settings = settings_for(
        "127.0.0.1", free_port(), username="sat", password_file=tmp_path / "missing"
    )
    with (
        MqttLink(settings, client_id="sat-pw") as link,
        pytest.raises(ConfigError, match="missing"),
    ):
        link.start()


def test_password_without_username_fails_start(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("hunter2\n")
    settings = settings_for("127.0.0.1", free_port(), password_file=secret)
    with MqttLink(settings, client_id="sat-pw2") as link, pytest.raises(ConfigError):
        link.start()


def test_bad_ca_file_fails_start(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    for ca_file in (tmp_path / "absent.pem", bogus):
        settings = settings_for("127.0.0.1", free_port(), tls=True, ca_file=ca_file)
        with (
            MqttLink(settings, client_id="sat-tls") as link,
            pytest.raises(ConfigError, match="TLS"),
        ):
            link.start()


def test_close_is_idempotent_and_safe_before_start() -> None:
    link = MqttLink(settings_for("127.0.0.1", free_port()), client_id="sat-idle")
    link.close()
    link.close()
    with pytest.raises(MqttError, match="closed"):
        link.start()


@pytest.mark.integration
def test_set_birth_while_connected_publishes_now(broker: Broker) -> None:
    with (
        Probe(broker.host, broker.port, STATUS) as probe,
        MqttLink(settings_for(broker.host, broker.port), client_id="sat-birth") as link,
    ):
        link.start()
        assert link.wait_connected(WAIT)
        link.set_birth(STATUS, b"v2")
        message = probe.wait_for(on_topic(STATUS), WAIT)
    assert (message.payload, message.qos, message.retain) == (b"v2", 1, True)


def knocks(server: socket.socket, count: int) -> list[float]:
    """When each of `count` connections arrived; each is closed at once, before any CONNACK."""
    times = []
    server.settimeout(WAIT)
    for _ in range(count):
        conn, _ = server.accept()
        times.append(time.monotonic())
        conn.close()
    return times


def test_reconnect_waits_are_the_links_jittered_backoff_not_pauses_of_pahos_own(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A "broker" that accepts and hangs up: paho gets no CONNACK, each attempt is seen here.
    figures = {"reconnect_min_s": 0.2, "reconnect_max_s": 0.8}
    expected = Backoff(0.2, 0.8, jitter=0.2, rng=random.Random(11))
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        settings = settings_for("127.0.0.1", port, **figures)
        with MqttLink(settings, client_id="sat-knock", rng=random.Random(11)) as link:
            link.start()
            times = knocks(server, 6)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    waits = [expected.next() for _ in gaps]
    print("waits", [f"{w:.3f}" for w in waits], "gaps", [f"{g:.3f}" for g in gaps])
    # paho's own timer would wait whole seconds (1, 2, 4, ...) and the same ones each time.
    assert all(w - 0.01 <= g <= w + 0.25 for w, g in zip(waits, gaps, strict=True)), gaps
    assert "Traceback" not in caplog.text


@pytest.mark.integration
def test_close_cuts_a_long_reconnect_wait_short_and_releases_thread_and_sockets(
    broker: Broker,
) -> None:
    fds = len(os.listdir("/proc/self/fd"))
    settings = settings_for(broker.host, broker.port, reconnect_min_s=30, reconnect_max_s=60)
    link = MqttLink(settings, client_id="sat-release")
    link.start()
    assert link.wait_connected(WAIT)
    broker.stop()  # lost: the next attempt is 30 s away
    wait_until(lambda: not link.connected, WAIT, "the loss noticed")
    began = time.monotonic()
    link.close()
    took = time.monotonic() - began
    assert took < 2.0, f"close() waited {took:.1f} s for the reconnect wait"
    assert not any(t.name == "mqtt sat-release" for t in threading.enumerate())
    assert len(os.listdir("/proc/self/fd")) == fds, "a socket of the link is still open"


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.01)  # polling interval, bounded by the deadline


def echo_link(port: int, **overrides: object) -> tuple[MqttLink, queue.Queue[tuple[str, bytes]]]:
    """A link subscribed to everything it publishes: it sees, in order, what the broker got.

    Its own subscription is acknowledged before a reconnect hands the offline queue over,
    so nothing it flushes can slip past it (a separate probe would race the reconnect).
    """
    received, on_message = inbox()
    settings = settings_for("127.0.0.1", port, **overrides)
    link = MqttLink(settings, client_id="sat-echo", subscriptions=["v1/#"], on_message=on_message)
    return link, received


def drain(received: queue.Queue[tuple[str, bytes]], until: bytes) -> list[bytes]:
    """Payloads received up to and including `until` (each wait bounded)."""
    payloads: list[bytes] = []
    while until not in payloads:
        payloads.append(received.get(timeout=WAIT)[1])
    return payloads


@pytest.mark.integration
def test_offline_queue_is_bounded_drops_interims_and_the_oldest_keeps_order(
    tmp_path: Path,
) -> None:
    broker = Broker(tmp_path / "broker", port=free_port())
    link, received = echo_link(broker.port, offline_queue=10)
    with link:
        link.start()
        link.set_birth(STATUS, b"birth-1")
        for i in range(15):
            link.publish(STATE, f"final-{i}".encode(), qos=1)
            link.publish(STATE, f"interim-{i}".encode(), qos=0)
        link.set_birth(STATUS, b"birth-2")  # replaces birth-1: only the latest is re-published
        assert (link.queued, link.dropped_qos0, link.dropped_offline) == (10, 15, 5)
        with broker:
            assert link.wait_connected(WAIT)
            assert link.queued == 0
            link.publish(STATE, b"after", qos=1)
            payloads = drain(received, b"after")
    assert payloads == [f"final-{i}".encode() for i in range(5, 15)] + [b"birth-2", b"after"]


@pytest.mark.integration
def test_outage_keeps_publishes_from_another_thread_in_order_without_loss(
    broker: Broker,
) -> None:
    link, received = echo_link(broker.port, offline_queue=100000)
    sent, echoed = 0, []
    stop = threading.Event()

    def pump() -> None:  # the pipeline thread, publishing while paho's thread flushes
        nonlocal sent
        while not stop.is_set():
            link.publish(STATE, str(sent).encode(), qos=1)
            sent += 1
            stop.wait(0.001)  # pacing, not synchronisation

    def echoed_at_least(n: int) -> Callable[[], bool]:
        def check() -> bool:
            while not received.empty():
                echoed.append(int(received.get_nowait()[1]))
            return len(echoed) >= n

        return check

    with link:
        link.start()
        assert link.wait_connected(WAIT)
        pumping = threading.Thread(target=pump, name="pump")
        pumping.start()
        try:
            wait_until(echoed_at_least(50), WAIT, "50 messages before the outage")
            broker.stop()
            wait_until(lambda: link.queued >= 50, WAIT, "50 messages queued while down")
            broker.start()
            assert link.wait_connected(WAIT)
            queued = sent - len(echoed)  # about: some may still be in flight
            wait_until(echoed_at_least(len(echoed) + 50), WAIT, "50 more after the reconnect")
        finally:
            stop.set()
            pumping.join(WAIT)
        last = sent - 1
        wait_until(lambda: echoed_at_least(1)() and echoed[-1] == last, WAIT, f"{last} echoed")
    print(
        f"{sent} published by another thread, ~{queued} during the outage, echoed in order; "
        f"{len(echoed) - sent} duplicates (in flight when the broker stopped)"
    )
    first_seen = list(dict.fromkeys(echoed))
    assert first_seen == list(range(sent)), "lost or reordered"
    assert echoed == sorted(echoed), "reordered"
    # A message in flight when the broker died may come twice (QoS 1); the queue adds none.
    assert len(echoed) - sent <= 20, "more duplicates than paho can have had in flight"
