"""One identity, one satellite (issue 12, item 8): a second connection with our client id is
reported and backed off from, never fought; broker restarts and our own restarts are not one.

Real mosquitto throughout: MqttLinks wired as the app wires them (birth and will carrying the
instance_id, the status read back), a bare MQTT client taking our client id, and two real
daemons configured with the same satellite_id. The reconnect backoff is 0.1-0.5 s here, so the
old fight ran at several connections a second (about one a second with the 1 s default).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from satellite.config import MqttSettings
from satellite.core.ids import new_id
from satellite.mqtt.link import MqttLink
from satellite.mqtt.takeover import OwnStatus
from tests.support.broker import Broker
from tests.support.fifo_mic import FifoMic
from tests.support.mqtt_probe import Probe
from tests.support.satellite_proc import SatelliteProcess, room_config

pytestmark = pytest.mark.integration

CLIENT_ID = "satellite-kitchen-sat1"
STATUS = "v1/voice_assistant/room/kitchen/satellite/sat1/status"
COMMAND = "v1/voice_assistant/room/kitchen/satellite/sat1/command"
ADVICE = "give each satellite its own satellite_id"
WINDOW_S = 20.0  # how long a fight is watched once it was reported
WAIT = 10.0


def satellite_link(port: int, name: str) -> MqttLink:
    """A link as the runtime builds it: status birth and will with this instance's id."""
    instance_id = new_id()

    def status(online: bool) -> bytes:
        body = {"online": online, "room_id": "kitchen", "satellite_id": "sat1"}
        return json.dumps(body | {"instance_id": instance_id, "since": 0}).encode()

    settings = MqttSettings(
        host="127.0.0.1", port=port, keepalive_s=5, reconnect_min_s=0.1, reconnect_max_s=0.5
    )
    link = MqttLink(
        settings,
        client_id=CLIENT_ID,
        will=(STATUS, status(False)),
        subscriptions=[COMMAND],
        logger=logging.getLogger(f"satellite.mqtt.link.{name}"),
        own_status=OwnStatus(instance_id, ADVICE),
    )
    link.set_birth(STATUS, status(True))
    return link


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)  # polling, bounded by the deadline above


def connections(broker: Broker) -> int:
    """Connections the broker accepted with our client id so far (from its log)."""
    return broker.logs().count(f" as {CLIENT_ID} (")


def count_during(seconds: float, count: Callable[[], int], limit: int) -> int:
    """How much `count()` grows in the next `seconds`; fails as soon as it grows past `limit`."""
    start, deadline = count(), time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert count() - start <= limit, f"{count() - start} in under {seconds} s: a fight"
        time.sleep(0.2)  # watching a fixed window; each poll is bounded by it
    return count() - start


def records(caplog: pytest.LogCaptureFixture, name: str, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == name and r.levelno == level]


def connected_lines(caplog: pytest.LogCaptureFixture, name: str) -> int:
    lines = records(caplog, name, logging.INFO)
    return sum(line.startswith("connected to MQTT broker") for line in lines)


@pytest.fixture
def watched(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.INFO, logger="satellite.mqtt.link")
    yield caplog
    assert "Traceback" not in caplog.text


def test_two_satellites_with_one_client_id_report_it_and_stop_fighting(
    broker: Broker, watched: pytest.LogCaptureFixture
) -> None:
    first, second = satellite_link(broker.port, "first"), satellite_link(broker.port, "second")
    names = ("satellite.mqtt.link.first", "satellite.mqtt.link.second")
    with first, second:
        first.start()
        assert first.wait_connected(WAIT)
        started = time.monotonic()
        second.start()
        reported = lambda: all(records(watched, n, logging.ERROR) for n in names)  # noqa: E731
        wait_until(reported, WAIT, "an ERROR from each satellite")
        detected_s, before = time.monotonic() - started, connections(broker)
        during = count_during(WINDOW_S, lambda: connections(broker), limit=2)
        assert first.connected != second.connected, "one of them keeps the connection"
    for name in names:
        [error] = records(watched, name, logging.ERROR)
        assert f"MQTT client id {CLIENT_ID!r} is in use by another connection" in error
        assert "another satellite's status was on this satellite's status topic" in error
        assert error.endswith(ADVICE)
    print(
        f"two satellites, one client id: both reported it {detected_s:.2f} s after the second "
        f"started, {before} connections until then, {during} in the next {WINDOW_S:g} s"
    )


def test_any_client_taking_our_client_id_is_reported_and_backed_off_from(
    broker: Broker, watched: pytest.LogCaptureFixture
) -> None:
    link = satellite_link(broker.port, "sat")
    name = "satellite.mqtt.link.sat"
    with link:
        link.start()
        assert link.wait_connected(WAIT)
        # A bare client (no status, no will) that paho reconnects 1-2 s after each kick.
        with Probe(broker.host, broker.port, "unrelated/#", client_id=CLIENT_ID):
            started = time.monotonic()
            wait_until(lambda: bool(records(watched, name, logging.ERROR)), 30, "an ERROR")
            detected_s, before = time.monotonic() - started, connected_lines(watched, name)
            during = count_during(WINDOW_S, lambda: connected_lines(watched, name), limit=1)
    [error] = records(watched, name, logging.ERROR)
    assert "closed 5 connections in a row within 3 s of accepting them" in error
    assert "published this satellite's will each time" in error and error.endswith(ADVICE)
    waits = [w for w in records(watched, name, logging.WARNING) if "reconnecting in" in w]
    assert waits and all(float(w.split("reconnecting in ")[1].split()[0]) >= 24 for w in waits)
    print(
        f"another client with our client id: reported after {detected_s:.1f} s and "
        f"{before} connections of ours, {during} in the next {WINDOW_S:g} s"
    )


def restart(
    broker: Broker, link: MqttLink, caplog: pytest.LogCaptureFixture, *, quick: bool
) -> float:
    """Restart the broker (not quick: once the link failed to reach it); seconds until back."""

    def failed() -> int:
        return len(records(caplog, "satellite.mqtt.link.sat", logging.WARNING))

    failures = failed()
    broker.stop()
    wait_until(lambda: not link.connected, WAIT, "the link saw the broker go")
    if not quick:
        wait_until(lambda: failed() > failures, WAIT, "a failed attempt")
    broker.start()
    back = time.monotonic()
    assert link.wait_connected(WAIT)
    return time.monotonic() - back


@pytest.mark.parametrize("persistence", [False, True], ids=["in-memory", "persistent"])
def test_broker_restarts_and_our_own_restart_are_no_takeover(
    tmp_path: Path, watched: pytest.LogCaptureFixture, persistence: bool
) -> None:
    # A persistent mosquitto publishes the wills of its clients when it stops: after the restart
    # our own will is retained, as after a takeover. Only a streak of them is a sign.
    extra = f"persistence true\npersistence_location {tmp_path}/\n" if persistence else ""
    watched.set_level(logging.DEBUG, logger="satellite.mqtt.link.sat")
    reconnects = []
    with Broker(tmp_path / "broker", extra_config=extra) as broker:
        with satellite_link(broker.port, "before") as predecessor:  # our last run
            predecessor.start()
            assert predecessor.wait_connected(WAIT)
        with satellite_link(broker.port, "sat") as link:
            link.start()
            assert link.wait_connected(WAIT)
            # Three as quick as mosquitto restarts, three as slow as systemctl restart.
            for quick in (True, True, True, False, False, False):
                reconnects.append(restart(broker, link, watched, quick=quick))
    warnings = records(watched, "satellite.mqtt.link.sat", logging.WARNING)
    assert not [w for w in warnings if "in use" in w], warnings
    assert not [r for r in watched.records if r.levelno >= logging.ERROR]
    seen = records(watched, "satellite.mqtt.link.sat", logging.DEBUG)
    assert sum("is another process's" in line for line in seen) == 1, "the predecessor's, once"
    assert max(reconnects) < 2.0, reconnects  # the normal 0.1-0.5 s backoff, not 30 s
    print(f"6 restarts ({'persistent' if persistence else 'in-memory'}): no takeover reported, "
          f"back after {min(reconnects):.2f}-{max(reconnects):.2f} s")  # fmt: skip


def test_two_daemons_with_the_same_satellite_id_report_it_and_stop_fighting(
    tmp_path: Path, broker: Broker, fifo_mic: FifoMic
) -> None:
    # The case: two Pis with one identity, here two real daemons with one config.
    status = "v1/voice_assistant/room/salon/satellite/sat1/status"
    client_id = "satellite-salon-sat1"
    configs = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        configs.append(room_config(tmp_path / name / "salon.toml", port=broker.port))
    with (
        FifoMic(tmp_path / "mic2") as other_mic,
        Probe(broker.host, broker.port, status) as probe,
        SatelliteProcess(
            ["run", "--config", str(configs[0])], env=fifo_mic.env, log_path=tmp_path / "one.log"
        ) as one,
    ):
        probe.wait_for(lambda m: json.loads(m.payload).get("online") is True, 30)
        with SatelliteProcess(
            ["run", "--config", str(configs[1])], env=other_mic.env, log_path=tmp_path / "two.log"
        ) as two:
            both = lambda: all(" ERROR " in sat.log() for sat in (one, two))  # noqa: E731
            wait_until(both, 60, "an ERROR from each daemon")

            def count() -> int:
                return broker.logs().count(f" as {client_id} (")

            before, mark = count(), len(probe.received())
            during = count_during(WINDOW_S, count, limit=2)
            wills = [
                m for m in probe.received()[mark:] if json.loads(m.payload).get("online") is False
            ]
            assert len(wills) <= 2, "no storm of online: false"
            assert one.proc.poll() is None and two.proc.poll() is None
            assert two.stop() == 0
        assert one.stop() == 0
    for sat in (one, two):
        [error] = [line for line in sat.log().splitlines() if " ERROR " in line]
        assert f"MQTT client id {client_id!r} is in use by another connection" in error
        assert "give each satellite its own satellite_id in its config" in error
        assert "satellite_id 'sat1' in room 'salon'" in error
        assert "Traceback" not in sat.log()
    print(
        f"two daemons, one satellite_id: {before} connections until both reported it, "
        f"{during} and {len(wills)} wills in the next {WINDOW_S:g} s"
    )
