"""The room's other publishers against the real daemon, mosquitto and the FIFO mic (issue 12).

LEDs tell the truth about this satellite's microphone, only live commands act, clearing a
retained message is no error, follow-ups are capped and a flood of states is coalesced on the
status. A negative ("nothing happened") is observed through a marker: an invalid payload
sent after the messages under test is counted, and the counter reaches the status only
after at least a second, by when anything they wrongly did would show in the same status.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.broker import Broker
from tests.support.fifo_mic import FifoMic
from tests.support.mqtt_probe import Probe, Received
from tests.support.satellite_proc import SatelliteProcess, room_config
from tests.support.speech import speak

pytestmark = pytest.mark.integration

ROOM = "v1/voice_assistant/room/salon"
STATUS = f"{ROOM}/satellite/sat1/status"
COMMAND = f"{ROOM}/satellite/sat1/command"
OWN_SOURCE = "satellite/sat1"
OTHER_STATE = f"{ROOM}/session/other-1/state"  # a session another satellite opened
RETAINED_WARNING = "WARNING satellite.runtime.control: ignored a retained message"
CAP_LINE = "(followup.max_per_session)"

Check = Callable[[Received], bool]


def status_of(message: Received) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(message.payload)
    return data


def counter(message: Received, name: str) -> int | None:
    if message.topic != STATUS:
        return None
    value: int | None = status_of(message).get("counters", {}).get(name)
    return value


def is_status(**expected: Any) -> Check:
    def check(message: Received) -> bool:
        if message.topic != STATUS:
            return False
        status = status_of(message)
        return all(status.get(key) == value for key, value in expected.items())

    return check


def counted(name: str, value: int) -> Check:
    return lambda m: counter(m, name) == value


def own_state(state: str) -> Check:
    """A state this satellite published (others' states on the same topics do not match)."""

    def check(message: Received) -> bool:
        if not message.topic.endswith("/state"):
            return False
        try:
            body = json.loads(message.payload)
        except ValueError:  # the tests' own markers and cleared payloads
            return False
        return bool(body.get("state") == state and body.get("source") == OWN_SOURCE)

    return check


def statuses(probe: Probe, start: int) -> list[dict[str, Any]]:
    return [status_of(m) for m in probe.received()[start:] if m.topic == STATUS]


def config_for(tmp_path: Path, broker: Broker, **extra: Any) -> Path:
    return room_config(
        tmp_path / "salon.toml", port=broker.port, leds={"hat": "respeaker-2mic"}, **extra
    )


def satellite(config: Path, mic: FifoMic, log_path: Path) -> SatelliteProcess:
    env = {**mic.env, "GPIOZERO_PIN_FACTORY": "mock"}
    return SatelliteProcess(["run", "--config", str(config)], env=env, log_path=log_path)


@pytest.fixture
def persistent_broker(tmp_path: Path) -> Iterator[Broker]:
    """mosquitto that keeps retained messages across a restart, like a production broker."""
    store = tmp_path / "store"
    store.mkdir()
    config = f"persistence true\npersistence_location {store}/\n"
    with Broker(tmp_path / "broker", extra_config=config) as started:
        yield started


# --- LEDs tell the truth about this satellite's microphone ---------------------------------


def test_another_publishers_muted_never_shows_the_muted_pattern_our_own_mute_does(
    tmp_path: Path, broker: Broker, fifo_mic: FifoMic
) -> None:
    config = config_for(tmp_path, broker)
    with (
        Probe(broker.host, broker.port, f"{ROOM}/#") as probe,
        satellite(config, fifo_mic, tmp_path / "log") as sat,
    ):
        probe.wait_for(is_status(online=True, led="idle"), 30)
        mark = len(probe.received())
        probe.publish(OTHER_STATE, b'{"state":"muted","source":"satellite/sat2"}')
        probe.publish(OTHER_STATE, b'{"state":"muted"}')
        probe.publish(OTHER_STATE, b"marker")
        marked = probe.wait_for(counted("invalid_messages", 1), 10, start=mark)
        assert (status_of(marked)["led"], status_of(marked)["muted"]) == ("idle", False)
        assert all(s.get("led") != "muted" for s in statuses(probe, mark))

        mark = len(probe.received())
        probe.publish(COMMAND, b'{"command":"mute"}')
        probe.wait_for(is_status(muted=True, led="muted", state="muted"), 5, start=mark)
        assert sat.proc.poll() is None


def test_others_states_cannot_hide_our_listening_pattern_during_our_session(
    tmp_path: Path, broker: Broker, fifo_mic: FifoMic
) -> None:
    config = config_for(tmp_path, broker, stt={"no_speech_timeout_s": 8.0})
    with (
        Probe(broker.host, broker.port, f"{ROOM}/#") as probe,
        satellite(config, fifo_mic, tmp_path / "log"),
    ):
        probe.wait_for(is_status(online=True, led="idle"), 30)
        mark = len(probe.received())
        probe.publish(COMMAND, b'{"command":"listen"}')  # live: opens our session
        session = probe.wait_for(own_state("listening"), 5, start=mark).topic.split("/")[5]
        probe.wait_for(is_status(led="listening", state="listening"), 5, start=mark)

        mark = len(probe.received())
        ours = f"{ROOM}/session/{session}/state"
        probe.publish(OTHER_STATE, b'{"state":"idle","source":"satellite/sat2"}')
        probe.publish(ours, b'{"state":"idle","source":"gateway"}')
        probe.publish(OTHER_STATE, b'{"state":"muted","source":"satellite/sat2"}')
        probe.publish(f"{ROOM}/session/other-1/overlay_hint", b'{"keep_open": false}')
        probe.publish(ours, b'{"state":"responding","source":"gateway"}')
        probe.publish(OTHER_STATE, b"marker")
        marked = probe.wait_for(counted("invalid_messages", 1), 10, start=mark)
        assert (status_of(marked)["led"], status_of(marked)["state"]) == ("listening", "listening")
        assert all(s.get("led") == "listening" for s in statuses(probe, mark))

        # Nothing is said: our session ends on its no-speech timeout, and the gateway's last
        # word during it (responding, within its 60 s timeout) shows.
        idle = probe.wait_for(own_state("idle"), 15, start=mark)
        after = probe.wait_for(is_status(state="idle"), 5, start=probe.received().index(idle))
        assert status_of(after)["led"] == "responding"


# --- Only live commands act ----------------------------------------------------------------


def test_a_retained_mute_is_ignored_at_connect_and_after_a_reconnect_a_live_one_mutes(
    tmp_path: Path, persistent_broker: Broker, fifo_mic: FifoMic
) -> None:
    broker = persistent_broker
    config = config_for(tmp_path, broker)
    with Probe(broker.host, broker.port, f"{ROOM}/#") as probe:
        probe.publish(COMMAND, b'{"command":"mute"}', retain=True)
        with satellite(config, fifo_mic, tmp_path / "log") as sat:
            first = probe.wait_for(counted("retained_commands", 1), 30)
            assert (status_of(first)["muted"], status_of(first)["led"]) == (False, "idle")

            mark = len(probe.received())
            broker.stop()
            broker.start()  # the retained mute is still there and comes again on resubscribe
            again = probe.wait_for(counted("retained_commands", 2), 30, start=mark)
            assert status_of(again)["muted"] is False
            assert not any(s.get("muted") for s in statuses(probe, 0))
            assert sat.log().count(RETAINED_WARNING) == 1
            assert f"mosquitto_pub -r -n -t {COMMAND}" in sat.log()

            mark = len(probe.received())
            probe.publish(COMMAND, b'{"command":"mute"}')  # live
            probe.wait_for(is_status(muted=True, led="muted"), 5, start=mark)

            mark = len(probe.received())
            probe.publish(COMMAND, b"", retain=True)  # mosquitto_pub -r -n: clears it
            probe.publish(OTHER_STATE, b"", retain=True)
            probe.publish(OTHER_STATE, b"marker")
            marked = probe.wait_for(counted("invalid_messages", 1), 10, start=mark)
            assert counter(marked, "retained_commands") == 2
            assert status_of(marked)["muted"] is True
            log = sat.log()
            warnings = [
                line for line in log.splitlines() if "WARNING satellite.runtime.control" in line
            ]
            assert len(warnings) == 2, warnings  # the retained mute once, the marker
            assert f"dropped a message on {COMMAND}" not in log
            assert "Traceback" not in log


def test_a_retained_listen_opens_no_session(
    tmp_path: Path, broker: Broker, fifo_mic: FifoMic
) -> None:
    config = config_for(tmp_path, broker)
    with Probe(broker.host, broker.port, f"{ROOM}/#") as probe:
        probe.publish(COMMAND, b'{"command":"listen"}', retain=True)
        with satellite(config, fifo_mic, tmp_path / "log") as sat:
            ignored = probe.wait_for(counted("retained_commands", 1), 30)
            assert counter(ignored, "sessions") == 0
            assert not any(own_state("listening")(m) for m in probe.received())
            assert sat.log().count(RETAINED_WARNING) == 1


# --- Bounds ---------------------------------------------------------------------------------


def test_follow_ups_past_the_cap_open_no_more_utterances(
    tmp_path: Path, broker: Broker, fifo_mic: FifoMic, speech_cache: Path
) -> None:
    followup = {"enabled": True, "no_speech_timeout_s": 1.0, "max_per_session": 1}
    config = config_for(tmp_path, broker, followup=followup)
    with (
        Probe(broker.host, broker.port, f"{ROOM}/#") as probe,
        satellite(config, fifo_mic, tmp_path / "log") as sat,
    ):
        probe.wait_for(is_status(online=True), 30)
        fifo_mic.feed(speak("hey jarvis, turn on the kitchen lights", cache_dir=speech_cache))
        final = probe.wait_for(lambda m: m.topic.endswith("/transcript/final"), 20)
        session = final.topic.split("/")[5]
        hint = f"{ROOM}/session/{session}/overlay_hint"
        probe.wait_for(own_state("idle"), 10, start=probe.received().index(final))
        mark = len(probe.received())
        probe.publish(hint, b'{"keep_open": true}')  # the one follow-up allowed
        probe.wait_for(own_state("listening"), 5, start=mark)
        probe.wait_for(own_state("idle"), 5, start=mark)  # nothing said: its own timeout

        mark = len(probe.received())
        for _ in range(3):
            probe.publish(hint, b'{"keep_open": true}')
        with pytest.raises(AssertionError):
            probe.wait_for(own_state("listening"), 3.0, start=mark)
        assert sat.log().count(CAP_LINE) == 1
        sessions = [s["counters"]["sessions"] for s in statuses(probe, 0) if "counters" in s]
        assert max(sessions) == 1


def test_a_flood_of_states_is_coalesced_on_the_status_and_the_last_one_is_published(
    tmp_path: Path, broker: Broker, fifo_mic: FifoMic
) -> None:
    flood = 20_000
    config = config_for(tmp_path, broker)
    with (
        Probe(broker.host, broker.port, STATUS) as status,
        Probe(broker.host, broker.port, "unused") as sender,
        satellite(config, fifo_mic, tmp_path / "log") as sat,
    ):
        status.wait_for(is_status(online=True, led="idle"), 30)
        mark = len(status.received())
        started = time.monotonic()
        for i in range(flood):
            state = ("processing", "thinking_hard")[i % 2]  # thinking_hard: `unknown` pattern
            sender.publish(OTHER_STATE, f'{{"state":"{state}"}}'.encode(), qos=0)
        sender.publish(OTHER_STATE, b'{"state":"responding"}')
        sent_s = time.monotonic() - started
        last = status.wait_for(is_status(led="responding"), 10, start=mark)
        until = status.received().index(last) + 1
        published = until - mark
        window_s = last.at - started
        print(
            f"flood of {flood + 1} states in {sent_s:.2f} s ({(flood + 1) / sent_s:.0f} msg/s): "
            f"{published} status publications in {window_s:.2f} s"
        )
        assert published <= 2 * window_s + 3
        with pytest.raises(AssertionError):  # responding stays: it was the last state
            status.wait_for(lambda m: not is_status(led="responding")(m), 2.0, start=until)
        assert sat.proc.poll() is None
