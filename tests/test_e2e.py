"""End to end on real components: FIFO microphone -> `satellite run` -> mosquitto."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from satellite.config import WakeSettings
from satellite.mqtt.schemas import SCHEMA_MODELS
from tests.support.broker import Broker
from tests.support.fifo_mic import FifoMic
from tests.support.mqtt_probe import Probe, Received
from tests.support.satellite_proc import ROOT, SatelliteProcess, room_config
from tests.support.speech import save_wav, speak

pytestmark = pytest.mark.integration

COMMAND = "turn on the kitchen lights"
SESSION_FILTER = "v1/voice_assistant/room/salon/session/+/#"
STATUS_FILTER = "v1/voice_assistant/room/salon/satellite/+/status"
SCHEMA_BY_TYPE = {
    "state": SCHEMA_MODELS["state"].model_json_schema(),
    "transcript/interim": SCHEMA_MODELS["transcript_interim"].model_json_schema(),
    "transcript/final": SCHEMA_MODELS["transcript_final"].model_json_schema(),
}


def topic_type(message: Received) -> str:
    parts = message.topic.split("/")
    return "/".join(parts[6:])


def payload(message: Received) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(message.payload)
    return data


def wait_online(status: Probe, timeout: float = 30.0) -> None:
    status.wait_for(lambda m: payload(m).get("online") is True, timeout)


def is_idle(message: Received) -> bool:
    return topic_type(message) == "state" and payload(message)["state"] == "idle"


def check_session(messages: list[Received]) -> dict[str, Any]:
    """The contract for one spoken command; returns the final payload."""
    kinds = [topic_type(m) for m in messages]
    states = [payload(m)["state"] for m in messages if topic_type(m) == "state"]
    assert states == ["wake_detected", "listening", "idle"], kinds
    assert kinds[:2] == ["state", "state"] and kinds[-2:] == ["transcript/final", "state"], kinds
    interims = [payload(m) for m in messages if topic_type(m) == "transcript/interim"]
    assert interims, kinds
    assert [i["sequence"] for i in interims] == list(range(1, len(interims) + 1))
    session_ids = {m.topic.split("/")[5] for m in messages}
    assert len(session_ids) == 1
    session_id = session_ids.pop()
    uuid.UUID(session_id)
    for m in messages:
        jsonschema.validate(payload(m), SCHEMA_BY_TYPE[topic_type(m)])
        if topic_type(m) == "state":
            assert payload(m)["session_id"] == session_id
            assert m.qos == 1
    wake = payload(messages[0])
    # The test room uses the default threshold.
    assert wake["wake_word"] == "hey_jarvis" and wake["score"] >= WakeSettings().threshold
    assert all(m.qos == 0 for m in messages if topic_type(m) == "transcript/interim")
    final_message = messages[-2]
    assert final_message.qos == 1
    final = payload(final_message)
    assert {i["utt_id"] for i in interims} == {final["utt_id"]}
    assert 0 < final["confidence"] <= 1
    assert len({payload(m)["message_id"] for m in messages}) == len(messages)
    return final


def test_spoken_command_publishes_the_whole_session(
    tmp_path: Path, broker: Broker, fifo_mic: FifoMic, speech_cache: Path
) -> None:
    config = room_config(tmp_path / "salon.toml", port=broker.port)
    utterance = speak(f"hey jarvis, {COMMAND}", cache_dir=speech_cache)
    with (
        Probe(broker.host, broker.port, SESSION_FILTER) as session,
        Probe(broker.host, broker.port, STATUS_FILTER) as status,
        SatelliteProcess(
            ["run", "--config", str(config)], env=fifo_mic.env, log_path=tmp_path / "sat.log"
        ) as sat,
    ):
        wait_online(status)
        fifo_mic.feed(utterance)
        session.wait_for(is_idle, timeout=30.0)
        final = check_session(session.received())
        assert final["text"] == COMMAND
        assert sat.stop() == 0
        assert "Traceback" not in sat.log()
        assert "ALSA lib" not in sat.log(), "PortAudio's device scan noise reached the log"
        offline = status.wait_for(lambda m: payload(m).get("online") is False, 5.0)
        assert offline.retain
    assert summarise_run(session.received()) == summarise_simulate(config, utterance, tmp_path)


def summarise_run(messages: list[Received]) -> list[tuple[str, str]]:
    """The session as (topic_type, state or text), with interims collapsed to one entry."""
    return collapse([(topic_type(m), payload(m)) for m in messages])


def summarise_simulate(config: Path, samples: Any, tmp_path: Path) -> list[tuple[str, str]]:
    """The same summary from `satellite simulate` on the same audio."""
    wav = tmp_path / "utterance.wav"
    save_wav(wav, samples)
    done = subprocess.run(
        [sys.executable, "-m", "satellite", "-q", "simulate", "--config", str(config), str(wav)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    return collapse([(line["topic_type"], line["payload"]) for line in lines])


def collapse(events: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, str]]:
    summary: list[tuple[str, str]] = []
    for kind, body in events:
        value = "" if kind == "transcript/interim" else body.get("state") or body["text"]
        if kind == "state" and body["state"] == "wake_detected":
            value += f" {body['wake_word']}"
        if not summary or summary[-1] != (kind, value):
            summary.append((kind, value))
    return summary


def test_broker_down_at_start_then_up_connects_and_works(
    tmp_path: Path, fifo_mic: FifoMic, speech_cache: Path
) -> None:
    broker = Broker(tmp_path / "broker")  # a port chosen, nothing listening yet
    config = room_config(tmp_path / "salon.toml", port=broker.port)
    log_path = tmp_path / "sat.log"
    with (
        SatelliteProcess(
            ["run", "--config", str(config)], env=fifo_mic.env, log_path=log_path
        ) as sat,
        broker,
    ):
        with (
            Probe(broker.host, broker.port, SESSION_FILTER) as session,
            Probe(broker.host, broker.port, STATUS_FILTER) as status,
        ):
            wait_online(status)
            assert sat.proc.poll() is None
            fifo_mic.feed(speak(f"hey jarvis, {COMMAND}", cache_dir=speech_cache))
            session.wait_for(is_idle, timeout=30.0)
            assert check_session(session.received())["text"] == COMMAND
        assert sat.stop() == 0
    assert "Traceback" not in sat.log()
