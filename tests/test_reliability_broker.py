"""Broker outage in the middle of an utterance, against mosquitto and a second broker (amqtt).

The real `satellite run` hears three commands through the FIFO microphone; the broker stops
while the first one is being listened to and comes back (same port, no persistence: it forgot
every session and retained message) about 10 s later, after the other two were spoken.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.amqtt_broker import AmqttBroker, Probe311
from tests.support.broker import Broker
from tests.support.fifo_mic import FifoMic
from tests.support.mqtt_probe import Received
from tests.support.satellite_proc import SatelliteProcess, room_config
from tests.support.speech import RATE, speak

pytestmark = pytest.mark.integration

ROOM = "v1/voice_assistant/room/salon"
STATUS = f"{ROOM}/satellite/sat1/status"
GATEWAY_STATE = f"{ROOM}/session/gw-1/state"
# Each transcribed exactly by `satellite simulate` at every 80-sample offset of the voice.
COMMANDS = ["turn on the kitchen lights", "turn off the kitchen lights", "stop the music"]
GAP = np.zeros(2 * RATE, dtype=np.int16)  # past the end of the session and the refractory time
OUTAGE_S = 10.0
AnyBroker = Broker | AmqttBroker
FINAL_LINE = "final transcript:"  # the satellite's INFO line per final, broker or not


def as_json(message: Received) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(message.payload)
    return data


def kind(message: Received) -> str:
    """`state`, `transcript/final`, … for session topics; `status` for the status topic."""
    parts = message.topic.split("/")
    return "/".join(parts[6:]) if is_session(message) else parts[-1]


def is_session(message: Received) -> bool:
    return message.topic.split("/")[4] == "session"


def is_status(**expected: Any) -> Callable[[Received], bool]:
    def check(message: Received) -> bool:
        status = as_json(message) if message.topic == STATUS else {}
        return bool(status) and all(status.get(k) == v for k, v in expected.items())

    return check


def is_state(state: str) -> Callable[[Received], bool]:
    return lambda m: kind(m) == "state" and as_json(m)["state"] == state


def summary(message: Received) -> str:
    body = as_json(message)
    return str(body["text"] if kind(message) == "transcript/final" else body["state"])


def wait_for_log(sat: SatelliteProcess, pattern: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while sat.log().count(pattern) < count:
        assert sat.proc.poll() is None, f"satellite exited;\n{sat.log()}"
        if time.monotonic() > deadline:
            raise AssertionError(f"{count} x {pattern!r} not logged in {timeout} s;\n{sat.log()}")
        time.sleep(0.05)  # polling interval, bounded by the deadline


@pytest.mark.parametrize("broker_class", [Broker, AmqttBroker], ids=["mosquitto", "amqtt"])
def test_broker_outage_mid_utterance_delivers_every_final_once_in_order(
    tmp_path: Path, fifo_mic: FifoMic, speech_cache: Path, broker_class: type[AnyBroker]
) -> None:
    broker = broker_class(tmp_path / "broker")
    config = room_config(tmp_path / "salon.toml", port=broker.port, leds={"hat": "respeaker-2mic"})
    first, *others = (speak(f"hey jarvis, {c}", cache_dir=speech_cache) for c in COMMANDS)
    env = {**fifo_mic.env, "GPIOZERO_PIN_FACTORY": "mock"}
    with (
        broker,
        Probe311(broker.host, broker.port, f"{ROOM}/#") as before,
        SatelliteProcess(
            ["run", "--config", str(config)], env=env, log_path=tmp_path / "log"
        ) as sat,
    ):
        before.wait_for(is_status(online=True, led="idle"), 30)
        fifo_mic.feed(first)
        before.wait_for(is_state("listening"), 15)
        broker.stop()  # returns once the process is gone, its port closed
        down = time.monotonic()
        finals_before = sat.log().count(FINAL_LINE)
        fifo_mic.feed(np.concatenate([GAP, others[0], GAP, others[1]]))
        wait_for_log(sat, FINAL_LINE, finals_before + len(COMMANDS), timeout=30)
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down)))  # the outage's length
        spoken = sat.log().count(FINAL_LINE) - finals_before
        seen_before = {
            as_json(m)["message_id"] for m in before.received() if m.at < down and is_session(m)
        }
        after, back = restart_with_probe_ready(broker, sat)
        outage = back - down
        with after, explained(sat, broker):  # `after` is started: `with` only closes it
            delivered = check_delivery(after, seen_before)
            reconnect = after.received()[0].at - back
            online = after.wait_for(is_status(online=True), 10)
            check_retained_online(broker)
            mark = len(after.received())
            after.publish(GATEWAY_STATE, b'{"state":"processing","source":"gateway"}')
            after.wait_for(is_status(led="processing"), 5, start=mark)
        assert sat.proc.poll() is None, "the satellite restarted or died"
        assert sat.stop() == 0
    log = sat.log()
    assert "Traceback" not in log
    flushed = re.search(r"sent (\d+) messages queued while offline \(dropped: (\d+) interims", log)
    assert flushed is not None, log
    print(
        f"[{broker_class.__name__}] finals spoken during the {outage:.1f} s outage: {spoken}, "
        f"delivered after it: {delivered}; reconnect (broker back -> first message) "
        f"{reconnect:.2f} s, status online after {online.at - back:.2f} s; "
        f"{flushed[1]} queued messages sent, {flushed[2]} interims dropped"
    )
    assert spoken == delivered == len(COMMANDS)


@contextmanager
def explained(sat: SatelliteProcess, broker: AnyBroker, lines: int = 60) -> Iterator[None]:
    """A failed assertion inside also shows the satellite's and the broker's last log lines."""
    try:
        yield
    except AssertionError as exc:
        tails = (
            f"{name} log, last {lines} lines:\n" + "\n".join(text.splitlines()[-lines:])
            for name, text in (("satellite", sat.log()), ("broker", broker.logs()))
        )
        raise AssertionError("\n".join((str(exc), *tails))) from None


def restart_with_probe_ready(broker: AnyBroker, sat: SatelliteProcess) -> tuple[Probe311, float]:
    """Start the broker again and subscribe a probe before the satellite can reconnect.

    The satellite is frozen (SIGSTOP) meanwhile: its next reconnect attempt could otherwise
    beat the probe's SUBSCRIBE by a few milliseconds, and the messages it flushes are not
    retained. Returns the probe and the time the satellite could see the broker again.
    """
    os.kill(sat.proc.pid, signal.SIGSTOP)
    try:
        broker.start()
        probe = Probe311(broker.host, broker.port, f"{ROOM}/#")
        probe.start()
    finally:
        os.kill(sat.proc.pid, signal.SIGCONT)
    return probe, time.monotonic()


def check_delivery(after: Probe311, seen_before: set[str]) -> int:
    """Everything queued while offline arrives once, in order; the number of finals."""
    last_final = after.wait_for(
        lambda m: kind(m) == "transcript/final" and as_json(m)["text"] == COMMANDS[-1], 15
    )
    start = after.received().index(last_final)
    after.wait_for(is_state("idle"), 5, start=start)
    session = [m for m in after.received() if kind(m) in ("state", "transcript/final")]
    ids = [as_json(m)["message_id"] for m in session]
    assert len(ids) == len(set(ids)), "a message was delivered twice"
    # A state in flight when the broker stopped may come again (QoS 1); nothing else may.
    queued = [summary(m) for m in session if as_json(m)["message_id"] not in seen_before]
    first, second, third = COMMANDS
    assert queued == [
        *(first, "idle"),
        *("wake_detected", "listening", second, "idle"),
        *("wake_detected", "listening", third, "idle"),
    ]
    finals = [as_json(m)["text"] for m in session if kind(m) == "transcript/final"]
    assert finals == COMMANDS
    return len(finals)


def check_retained_online(broker: AnyBroker) -> None:
    """A subscriber arriving now gets the re-published status, retained."""
    with Probe311(broker.host, broker.port, STATUS) as later:
        status = later.wait_for(is_status(online=True), 5)
    assert status.retain
