"""Everything at once: spoken sessions while the broker restarts, reloads arrive, the microphone
pauses and hostile retained messages wait on every subscribed topic (about a minute).

The real `satellite run` (FIFO microphone, real models, no LED hardware) against a
mosquitto with persistence, watched by a persistent-session probe, so that what the satellite
publishes while the probe is reconnecting after a restart is queued for it, not lost.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from satellite.runtime.reload_record import request_reload
from tests.support.broker import Broker
from tests.support.fifo_mic import FifoMic
from tests.support.mqtt_probe import Probe, Received
from tests.support.satellite_proc import SatelliteProcess, room_config
from tests.support.speech import RATE, speak

pytestmark = pytest.mark.integration

ROOM = "v1/voice_assistant/room/salon"
STATUS = f"{ROOM}/satellite/sat1/status"
COMMAND = f"{ROOM}/satellite/sat1/command"
COMMANDS = [
    "turn on the kitchen lights",
    "turn off the kitchen lights",
    "stop the music",
    "turn on the kitchen lights",
    "stop the music",
    "turn off the kitchen lights",
]
GAP = np.zeros(3 * RATE, dtype=np.int16)
LED_CEILING_S = 5.0
# Retained, waiting before the satellite connects and after every broker restart.
HOSTILE = {
    COMMAND: b'{"command": "mute"}',
    f"{ROOM}/session/other-sat/state": b'{"state": "muted", "source": "satellite/other"}',
    f"{ROOM}/session/old/state": b'{"state": "processing", "source": "gateway"}',
    f"{ROOM}/session/old/overlay_hint": b'{"keep_open": true}',
    f"{ROOM}/session/junk/state": b"\xff not json",
}


def as_json(message: Received) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(message.payload)
    return data


def kind(message: Received) -> str:
    parts = message.topic.split("/")
    return "/".join(parts[6:]) if parts[4] == "session" else parts[-1]


def own_session(message: Received) -> bool:
    """A session message this satellite published (not one of the hostile retained ones)."""
    if message.topic.split("/")[4] != "session" or message.retain:
        return False
    if kind(message) == "transcript/final":
        return True
    return kind(message) == "state" and as_json(message).get("source") == "satellite/sat1"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout} s")
        time.sleep(0.05)  # polling interval, bounded by the deadline


def publish_hostile(broker: Broker, *, skip: tuple[str, ...] = ()) -> None:
    with Probe(broker.host, broker.port, "unused/topic") as publisher:
        for topic, payload in HOSTILE.items():
            if topic not in skip:
                publisher.publish(topic, payload, retain=True)


class Chaos:
    """The disturbances, each run at its moment of a schedule (seconds after the start)."""

    def __init__(self, broker: Broker, mic: FifoMic, sat: SatelliteProcess, config: Path) -> None:
        self.broker, self.mic, self.sat, self.config = broker, mic, sat, config
        self.record = config.parent / "run" / "reload"
        self.reloads = 0
        self.restarts = 0
        self.pauses = 0

    def hostile(self) -> None:
        # Published again while the satellite is subscribed, they arrive live (RETAIN 0): a
        # live command acts by design, so the command stays the one stored before the start,
        # which comes back retained after every broker restart.
        publish_hostile(self.broker, skip=(COMMAND,))

    def restart_broker(self, down_s: float) -> None:
        self.broker.stop()
        time.sleep(down_s)  # the outage's length: a scheduled disturbance, not a wait
        self.broker.start()
        self.restarts += 1

    def reload(self, **sections: dict[str, Any]) -> None:
        room_config(self.config, port=self.broker.port, **_ROOM, **sections)  # type: ignore[arg-type]
        done = request_reload(self.sat.proc.pid, self.record, timeout=60.0)
        assert done.ok, done
        self.reloads += 1

    def pause_mic(self, seconds: float) -> None:
        self.pauses += 1
        self.mic.pause_writing()
        time.sleep(seconds)  # how long the microphone stalls: a scheduled disturbance
        self.mic.resume_writing()

    def run(self, schedule: list[tuple[float, Callable[[], None]]]) -> None:
        began = time.monotonic()
        for at, action in schedule:
            time.sleep(max(0.0, began + at - time.monotonic()))  # the schedule's clock
            action()


# No LED hardware: the status reports the pattern the satellite chose all the same. (gpiozero's
# mock pins keep every state change they ever had: bit-banged SPI on them grows by megabytes a
# minute, which would hide a leak of ours or make one up.)
_ROOM: dict[str, Any] = {"leds": {"hat": "none", "timeout_s": LED_CEILING_S}}


def test_chaos_every_final_is_delivered_in_order_and_nothing_sticks(
    tmp_path: Path, fifo_mic: FifoMic, speech_cache: Path
) -> None:
    persistence = tmp_path / "broker" / "db"
    persistence.mkdir(parents=True)
    broker = Broker(
        tmp_path / "broker",
        extra_config=f"persistence true\npersistence_location {persistence}/\n",
    )
    config = room_config(tmp_path / "salon.toml", port=broker.port, **_ROOM)
    (tmp_path / "run").mkdir()
    env = {
        **fifo_mic.env,
        "RUNTIME_DIRECTORY": str(tmp_path / "run"),
    }
    warmup, *rest = (speak(f"hey jarvis, {c}", cache_dir=speech_cache) for c in COMMANDS)
    audio = np.concatenate([part for spoken in rest for part in (spoken, GAP)])
    with broker:
        probe = Probe(
            broker.host, broker.port, f"{ROOM}/#", client_id="chaos-probe", persistent=True
        )
        with probe:
            publish_hostile(broker)
            with SatelliteProcess(
                ["run", "--config", str(config)], env=env, log_path=tmp_path / "log"
            ) as sat:
                chaos = Chaos(broker, fifo_mic, sat, config)
                probe.wait_for(lambda m: m.topic == STATUS and as_json(m)["online"], 30)
                # A first session in calm conditions: Vosk's decoder has its working memory
                # then, so what follows measures the chaos, not the first decode.
                fifo_mic.feed(np.concatenate([warmup, GAP]))
                probe.wait_for(lambda m: kind(m) == "transcript/final", 30)
                fifo_mic.wait_fed(30)
                pid, began = sat.proc.pid, time.monotonic()
                rss = [rss_mib(pid)]
                for spoken in (1 + len(rest), 1 + 2 * len(rest)):  # finals made by the end
                    fifo_mic.feed(audio)
                    chaos.run(schedule(chaos))
                    fifo_mic.wait_fed(120)
                    wait_for_finals(sat, probe, spoken)
                    check_leds_come_back(probe)
                    rss.append(rss_mib(pid))
                assert sat.proc.poll() is None and sat.proc.pid == pid, "the satellite restarted"
                assert sat.stop() == 0
    log = sat.log()
    took = time.monotonic() - began
    delivered = finals(probe)
    expected = [COMMANDS[0], *COMMANDS[1:], *COMMANDS[1:]]
    print(
        f"chaos, 2 rounds ({took:.0f} s): {len(expected)} spoken, {len(delivered)} finals "
        f"delivered; {chaos.restarts} broker restarts, {chaos.reloads} reloads, "
        f"{chaos.pauses} mic stalls; RSS after the first session, round 1, round 2: "
        f"{rss[0]:.0f}, {rss[1]:.0f}, {rss[2]:.0f} MiB"
    )
    assert [text for _, text in delivered] == expected
    check_no_final_after_its_idle(probe)
    assert "Traceback" not in log
    # Flat: the second round of the same chaos costs (almost) nothing more than the first.
    assert rss[2] - rss[1] <= 10, rss
    status = [
        as_json(m) for m in probe.received() if m.topic == STATUS and b'"online":true' in m.payload
    ][-1]
    assert status["muted"] is False, "a retained mute command was obeyed"


def schedule(chaos: Chaos) -> list[tuple[float, Callable[[], None]]]:
    """One round of disturbances, in seconds from the round's start (its audio is ~28 s)."""
    return [
        (2.0, lambda: chaos.reload(wake={"threshold": 0.45})),
        (5.0, lambda: chaos.restart_broker(2.0)),
        (9.0, chaos.hostile),
        (11.0, lambda: chaos.pause_mic(1.0)),
        (14.0, lambda: chaos.reload(followup={"enabled": True})),
        (17.0, lambda: chaos.restart_broker(4.0)),
        (22.0, chaos.hostile),
        (24.0, lambda: chaos.reload(mqtt={"keepalive_s": 20})),
        (27.0, lambda: chaos.pause_mic(0.5)),
        (30.0, lambda: chaos.restart_broker(1.0)),
        (32.0, chaos.hostile),
        (35.0, chaos.reload),
    ]


def wait_for_finals(sat: SatelliteProcess, probe: Probe, count: int) -> None:
    """Until the satellite made `count` finals and the probe has them all."""
    wait_until(lambda: sat.log().count("final transcript:") >= count, 60, f"{count} finals")
    probe.wait_for(lambda m: kind(m) == "transcript/final" and len(finals(probe)) >= count, 60)


def check_leds_come_back(probe: Probe) -> None:
    """Nothing sticks: once the room is quiet the LEDs show idle within the ceiling, whatever
    the hostile retained states said (from the latest status: it may already say idle)."""
    quiet = max(i for i, m in enumerate(probe.received()) if m.topic == STATUS)
    probe.wait_for(
        lambda m: m.topic == STATUS and as_json(m).get("led") == "idle",
        LED_CEILING_S + 10,
        start=quiet,
    )


def finals(probe: Probe) -> list[tuple[str, str]]:
    """(message_id, text) of each final, once each (delivery is at-least-once)."""
    seen: dict[str, str] = {}
    for message in probe.received():
        if kind(message) == "transcript/final":
            seen.setdefault(as_json(message)["message_id"], as_json(message)["text"])
    return list(seen.items())


def check_no_final_after_its_idle(probe: Probe) -> None:
    """In arrival order, each session's final comes before its idle."""
    idle_at: dict[str, int] = {}
    final_at: dict[str, int] = {}
    for index, message in enumerate(probe.received()):
        if not own_session(message):
            continue
        session = message.topic.split("/")[5]
        if kind(message) == "transcript/final":
            final_at.setdefault(session, index)
        elif as_json(message)["state"] == "idle":
            idle_at.setdefault(session, index)
    for session, index in final_at.items():
        assert index < idle_at.get(session, len(probe.received())), f"final after idle: {session}"
