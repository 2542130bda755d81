"""`satellite simulate`: the same pipeline on files, faster than real time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.broker import Broker
from tests.support.mqtt_probe import Probe
from tests.support.satellite_proc import ROOT, room_config
from tests.support.speech import save_wav, speak

pytestmark = pytest.mark.integration

COMMAND = "turn on the kitchen lights"

# About a minute of ordinary talk that never says the wake word.
CHATTER = [
    "Good morning, did you sleep well last night?",
    "I think we should buy more coffee and some bread on the way home.",
    "The weather report says it will rain this afternoon, so take an umbrella.",
    "My sister is coming to visit next weekend with her two children.",
    "Could you remind me where I put the car keys yesterday evening?",
    "The football match was exciting until the very last minute.",
    "We need to call the plumber about the leaking pipe in the bathroom.",
    "Dinner will be ready in about twenty minutes, please set the table.",
    "I read an interesting article about gardening and tomatoes.",
    "Let us plan a trip to the mountains when the summer holidays start.",
    "The children have a school concert on Thursday at six o'clock.",
    "Please turn off the television before you go to bed tonight.",
    "Have you seen the new bakery that opened around the corner?",
    "I would like to learn to play the piano this year.",
]


def simulate(
    config: Path, wavs: list[Path], *extra: str
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "satellite",
            "-q",
            "simulate",
            "--config",
            str(config),
            *extra,
            *map(str, wavs),
        ],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    summary = next(json.loads(line) for line in done.stderr.splitlines() if '"simulate"' in line)
    return events, summary["simulate"]


def wav_file(path: Path, samples: np.ndarray[Any, Any]) -> Path:
    save_wav(path, samples)
    return path


def command_wav(tmp_path: Path, speech_cache: Path) -> Path:
    return wav_file(
        tmp_path / "command.wav", speak(f"hey jarvis, {COMMAND}", cache_dir=speech_cache)
    )


def test_simulate_prints_the_session_and_its_speed(tmp_path: Path, speech_cache: Path) -> None:
    config = room_config(tmp_path / "salon.toml", port=1)
    events, summary = simulate(config, [command_wav(tmp_path, speech_cache)])
    kinds = [(e["topic_type"], e["payload"].get("state")) for e in events]
    assert kinds[:2] == [("state", "wake_detected"), ("state", "listening")]
    assert kinds[-2:] == [("transcript/final", None), ("state", "idle")]
    assert events[-2]["payload"]["text"] == COMMAND
    print(f"simulate speed: {summary['speed_x']}x real time ({summary['audio_s']} s audio)")
    assert summary["speed_x"] >= 4


def test_a_minute_of_speech_without_the_wake_word_opens_no_session(
    tmp_path: Path, speech_cache: Path
) -> None:
    talk = np.concatenate([speak(line, cache_dir=speech_cache) for line in CHATTER])
    while len(talk) < 60 * 16000:
        talk = np.concatenate([talk, talk])
    wav = wav_file(tmp_path / "chatter.wav", talk[: 65 * 16000])
    events, summary = simulate(room_config(tmp_path / "salon.toml", port=1), [wav])
    assert summary["audio_s"] >= 60
    assert events == []


def published_topics(
    tmp_path: Path, broker: Broker, speech_cache: Path, env: dict[str, str], **mqtt: Any
) -> list[str]:
    config = room_config(tmp_path / "salon.toml", port=broker.port, mqtt=mqtt)
    wav = command_wav(tmp_path, speech_cache)
    with Probe(broker.host, broker.port, "#") as probe:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "satellite",
                "-q",
                "simulate",
                "--publish",
                "--config",
                str(config),
                str(wav),
            ],
            cwd=ROOT,
            check=False,
            capture_output=True,
            text=True,
            timeout=240,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        probe.wait_for(lambda m: m.topic.endswith("/state") and b'"idle"' in m.payload, 10.0)
        return [m.topic for m in probe.received()]


def test_legacy_v0_topics_from_the_environment(
    tmp_path: Path, broker: Broker, speech_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MQTT_TOPIC_VERSION", "")
    topics = published_topics(tmp_path, broker, speech_cache, dict(os.environ))
    assert topics and all(t.startswith("voice_assistant/room/salon/session/") for t in topics)


def test_custom_base_prefix_from_the_environment(
    tmp_path: Path, broker: Broker, speech_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MQTT_BASE_PREFIX", "house_assistant")
    topics = published_topics(tmp_path, broker, speech_cache, dict(os.environ))
    assert topics and all(t.startswith("v1/house_assistant/room/salon/session/") for t in topics)


def test_dual_publishing_sends_every_message_to_both_trees(
    tmp_path: Path, broker: Broker, speech_cache: Path
) -> None:
    topics = published_topics(tmp_path, broker, speech_cache, dict(os.environ), dual_publish=True)
    v1 = [t for t in topics if t.startswith("v1/voice_assistant/room/salon/session/")]
    v0 = [t for t in topics if t.startswith("voice_assistant/room/salon/session/")]
    assert v1 and sorted(f"v1/{t}" for t in v0) == sorted(v1)
    assert len(v1) + len(v0) == len(topics)


def test_wake_word_alone_returns_to_idle_without_a_final(
    tmp_path: Path, speech_cache: Path
) -> None:
    config = room_config(tmp_path / "salon.toml", port=1, stt={"no_speech_timeout_s": 2.0})
    wav = wav_file(tmp_path / "wake.wav", speak("hey jarvis", cache_dir=speech_cache))
    events, _ = simulate(config, [wav])
    kinds = [(e["topic_type"], e["payload"].get("state")) for e in events]
    assert kinds == [("state", "wake_detected"), ("state", "listening"), ("state", "idle")]
