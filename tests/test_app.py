"""The whole satellite against real mosquitto and the FIFO mic: LEDs, mute, status, commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from satellite.mqtt.contracts import StatusMessage
from tests.support.broker import Broker
from tests.support.fifo_mic import FifoMic
from tests.support.mqtt_probe import Probe, Received
from tests.support.satellite_proc import ROOT, SatelliteProcess, room_config
from tests.support.speech import speak

pytestmark = pytest.mark.integration

ROOM = "v1/voice_assistant/room/salon"
STATUS = f"{ROOM}/satellite/sat1/status"
COMMAND = f"{ROOM}/satellite/sat1/command"
GATEWAY_STATE = f"{ROOM}/session/gw-1/state"
WAKE_UTTERANCE = "hey jarvis, turn on the kitchen lights"


def status_of(message: Received) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(message.payload)
    return data


def is_status(**expected: Any) -> Any:
    def check(message: Received) -> bool:
        if message.topic != STATUS:
            return False
        status = status_of(message)
        return all(status.get(key) == value for key, value in expected.items())

    return check


def is_state(state: str) -> Any:
    return lambda m: m.topic.endswith("/state") and json.loads(m.payload).get("state") == state


def mock_env(mic: FifoMic) -> dict[str, str]:
    return {**mic.env, "GPIOZERO_PIN_FACTORY": "mock"}


def config_for(tmp_path: Path, broker: Broker, **extra: Any) -> Path:
    sections = {"leds": {"hat": "respeaker-2mic"}, **extra}
    return room_config(tmp_path / "salon.toml", port=broker.port, **sections)


def test_gateway_state_changes_the_led_pattern_within_200_ms(
    tmp_path: Path, broker: Broker, fifo_mic: FifoMic
) -> None:
    config = config_for(tmp_path, broker)
    with (
        Probe(broker.host, broker.port, f"{ROOM}/#") as probe,
        SatelliteProcess(
            ["run", "--config", str(config)], env=mock_env(fifo_mic), log_path=tmp_path / "log"
        ) as sat,
    ):
        probe.wait_for(is_status(online=True, led="idle"), 30)
        seen = len(probe.received())
        probe.publish(
            "v1/voice_assistant/room/kitchen/session/gw-1/state", b'{"state":"processing"}'
        )
        with pytest.raises(AssertionError):  # another room's state changes nothing
            probe.wait_for(is_status(), 1.0, start=seen)
        sent = time.monotonic()
        probe.publish(GATEWAY_STATE, b'{"state":"processing","source":"gateway"}')
        changed = probe.wait_for(is_status(led="processing"), 2.0, start=seen)
        latency_ms = (changed.at - sent) * 1000
        print(f"gateway state -> status.led: {latency_ms:.0f} ms")
        assert latency_ms <= 200
        assert sat.proc.poll() is None


def test_invalid_payloads_change_nothing_and_are_counted(
    tmp_path: Path, broker: Broker, fifo_mic: FifoMic
) -> None:
    config = config_for(tmp_path, broker)
    garbage = [
        b"\xff\xfe garbage",
        b"[1,2]",
        b'{"state": 42}',
        json.dumps({"state": "x" * (1 << 20)}).encode(),
    ]
    with (
        Probe(broker.host, broker.port, f"{ROOM}/#") as probe,
        SatelliteProcess(
            ["run", "--config", str(config)], env=mock_env(fifo_mic), log_path=tmp_path / "log"
        ) as sat,
    ):
        probe.wait_for(is_status(online=True, led="idle"), 30)
        for i in range(1000):
            probe.publish(GATEWAY_STATE, garbage[i % len(garbage)], qos=0)
        counted = probe.wait_for(
            lambda m: (
                is_status()(m) and status_of(m).get("counters", {}).get("invalid_messages") == 1000
            ),
            30.0,
        )
        assert status_of(counted)["led"] == "idle"
        assert all(
            status_of(m).get("led") in (None, "idle") for m in probe.received() if m.topic == STATUS
        )
        assert sat.proc.poll() is None


def test_a_non_idle_pattern_times_out_back_to_idle(
    tmp_path: Path, broker: Broker, fifo_mic: FifoMic
) -> None:
    config = config_for(tmp_path, broker, leds={"hat": "respeaker-2mic", "timeout_s": 1.0})
    with (
        Probe(broker.host, broker.port, f"{ROOM}/#") as probe,
        SatelliteProcess(
            ["run", "--config", str(config)], env=mock_env(fifo_mic), log_path=tmp_path / "log"
        ),
    ):
        probe.wait_for(is_status(online=True, led="idle"), 30)
        sent = time.monotonic()  # the status may wait up to 0.5 s (coalesced): time the state
        probe.publish(GATEWAY_STATE, b'{"state":"processing"}')
        shown = probe.wait_for(is_status(led="processing"), 2.0)
        back = probe.wait_for(is_status(led="idle"), 5.0, start=probe.received().index(shown))
        print(f"processing pattern returned to idle after {back.at - sent:.2f} s (timeout 1 s)")
        assert 0.8 <= back.at - sent <= 2.5


def run_harness(config: Path, mic: FifoMic, log_path: Path) -> subprocess.Popen[str]:
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.button_harness", str(config)],
        cwd=ROOT,
        env=mic.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    log.close()
    return proc


def harness_say(proc: subprocess.Popen[str], command: str, expect: str) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(command + "\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == expect


def speak_and_check_session(
    probe: Probe, mic: FifoMic, speech_cache: Path, *, expect_session: bool
) -> None:
    seen = len(probe.received())
    mic.feed(speak(WAKE_UTTERANCE, cache_dir=speech_cache))
    mic.wait_fed(15.0)
    if expect_session:
        probe.wait_for(is_state("wake_detected"), 5.0, start=seen)
        probe.wait_for(is_state("idle"), 15.0, start=seen)
    else:
        with pytest.raises(AssertionError):
            probe.wait_for(is_state("wake_detected"), 3.0, start=seen)


def test_mute_by_button_and_command_stops_sessions_and_survives_a_restart(
    tmp_path: Path, broker: Broker, fifo_mic: FifoMic, speech_cache: Path
) -> None:
    config = config_for(tmp_path, broker)
    with Probe(broker.host, broker.port, f"{ROOM}/#") as probe:
        with run_harness(config, fifo_mic, tmp_path / "harness.log") as harness:
            assert harness.stdout is not None and harness.stdout.readline().strip() == "ready"
            probe.wait_for(is_status(online=True, muted=False), 30)
            mark = len(probe.received())
            harness_say(harness, "press", "pressed")
            probe.wait_for(is_state("muted"), 5.0, start=mark)
            probe.wait_for(is_status(muted=True, led="muted", state="muted"), 5.0, start=mark)
            speak_and_check_session(probe, fifo_mic, speech_cache, expect_session=False)
            mark = len(probe.received())
            harness_say(harness, "press", "pressed")
            probe.wait_for(is_status(muted=False), 5.0, start=mark)
            speak_and_check_session(probe, fifo_mic, speech_cache, expect_session=True)
            harness_say(harness, "quit", "")
            assert harness.wait(10) == 0
        log = tmp_path / "log"
        with SatelliteProcess(
            ["run", "--config", str(config)], env=mock_env(fifo_mic), log_path=log
        ) as sat:
            probe.wait_for(is_status(online=True, muted=False), 30, start=len(probe.received()))
            mark = len(probe.received())
            probe.publish(COMMAND, b'{"command":"mute"}')
            probe.wait_for(is_status(muted=True), 5.0, start=mark)
            assert sat.stop() == 0
        seen = len(probe.received())
        with SatelliteProcess(
            ["run", "--config", str(config)], env=mock_env(fifo_mic), log_path=log
        ):
            probe.wait_for(is_status(online=True, muted=True), 30, start=seen)
            speak_and_check_session(probe, fifo_mic, speech_cache, expect_session=False)
            mark = len(probe.received())
            probe.publish(COMMAND, b'{"command":"unmute"}')
            probe.wait_for(is_status(muted=False), 5.0, start=mark)
            speak_and_check_session(probe, fifo_mic, speech_cache, expect_session=True)


def test_listen_command_opens_a_session_without_the_wake_word(
    tmp_path: Path, broker: Broker, fifo_mic: FifoMic, speech_cache: Path
) -> None:
    config = config_for(tmp_path, broker)
    with (
        Probe(broker.host, broker.port, f"{ROOM}/#") as probe,
        SatelliteProcess(
            ["run", "--config", str(config)], env=mock_env(fifo_mic), log_path=tmp_path / "log"
        ),
    ):
        probe.wait_for(is_status(online=True), 30)
        probe.publish(COMMAND, b'{"command":"listen"}')
        probe.wait_for(lambda m: m.topic.endswith("/state") and b'"listening"' in m.payload, 5.0)
        fifo_mic.feed(speak("turn on the kitchen lights", cache_dir=speech_cache))
        final = probe.wait_for(lambda m: m.topic.endswith("/transcript/final"), 15.0)
        assert json.loads(final.payload)["text"] == "turn on the kitchen lights"
        states = [
            json.loads(m.payload)["state"] for m in probe.received() if m.topic.endswith("/state")
        ]
        assert "wake_detected" not in states


def test_kill_9_leaves_the_last_will_and_a_restart_comes_back_online(
    tmp_path: Path, broker: Broker, fifo_mic: FifoMic
) -> None:
    keepalive = 5
    config = config_for(tmp_path, broker, mqtt={"keepalive_s": keepalive})
    with Probe(broker.host, broker.port, STATUS) as probe:
        sat = SatelliteProcess(
            ["run", "--config", str(config)], env=mock_env(fifo_mic), log_path=tmp_path / "log"
        )
        with sat:
            birth = status_of(probe.wait_for(is_status(online=True), 30))
            os.kill(sat.proc.pid, signal.SIGKILL)
            killed = time.monotonic()
            will = probe.wait_for(
                is_status(online=False), 1.5 * keepalive, start=len(probe.received())
            )
            print(f"last will after kill -9: {will.at - killed:.2f} s (keepalive {keepalive} s)")
            assert will.retain
        # The will claims no time it cannot know; it names the run it ends.
        ended = StatusMessage.model_validate_json(will.payload)
        assert ended.timestamp is None and ended.uptime_s is None and ended.state is None
        assert (ended.since, ended.instance_id) == (birth["since"], birth["instance_id"])
        assert birth["timestamp"] >= birth["since"]
        with SatelliteProcess(
            ["run", "--config", str(config)], env=mock_env(fifo_mic), log_path=tmp_path / "log2"
        ):
            again = probe.wait_for(is_status(online=True), 30, start=len(probe.received()))
            assert status_of(again)["instance_id"] != birth["instance_id"]
            assert status_of(again)["since"] >= birth["since"]
    with Probe(broker.host, broker.port, STATUS) as late:
        retained = late.wait_for(lambda m: True, 5.0)
        assert status_of(retained)["online"] is False and retained.retain


def test_keep_open_opens_one_follow_up_utterance_in_the_same_session(
    tmp_path: Path, broker: Broker, fifo_mic: FifoMic, speech_cache: Path
) -> None:
    config = config_for(tmp_path, broker, followup={"enabled": True, "no_speech_timeout_s": 1.5})
    with (
        Probe(broker.host, broker.port, f"{ROOM}/#") as probe,
        SatelliteProcess(
            ["run", "--config", str(config)], env=mock_env(fifo_mic), log_path=tmp_path / "log"
        ),
    ):
        probe.wait_for(is_status(online=True), 30)
        fifo_mic.feed(speak(WAKE_UTTERANCE, cache_dir=speech_cache))
        final = probe.wait_for(lambda m: m.topic.endswith("/transcript/final"), 15.0)
        session = final.topic.split("/")[5]
        first_utt = json.loads(final.payload)["utt_id"]
        mark = len(probe.received())
        probe.publish(f"{ROOM}/session/{session}/state", b'{"state":"responding"}')
        probe.publish(f"{ROOM}/session/{session}/overlay_hint", b'{"keep_open": true}')
        listening = probe.wait_for(is_state("listening"), 5.0, start=mark)
        assert listening.topic.split("/")[5] == session
        fifo_mic.feed(speak("turn off the kitchen lights", cache_dir=speech_cache))
        follow = probe.wait_for(lambda m: m.topic.endswith("/transcript/final"), 15.0, start=mark)
        assert follow.topic.split("/")[5] == session
        assert json.loads(follow.payload)["utt_id"] != first_utt
        mark = len(probe.received())
        probe.publish(f"{ROOM}/session/{session}/overlay_hint", b'{"keep_open": true}')
        probe.wait_for(is_state("listening"), 5.0, start=mark)
        idle = probe.wait_for(is_state("idle"), 5.0, start=mark)  # nothing said: own timeout
        assert idle.topic.split("/")[5] == session
