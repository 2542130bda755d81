"""Capture and conversion: channel selection, resampling, framing, bounded queue."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from satellite.audio import Capture, FrameAssembler, InputDevice, pick_device
from satellite.config import AudioSettings
from satellite.errors import AudioError
from satellite.frames import FRAME_SAMPLES
from tests.support.broker import Broker
from tests.support.fifo_mic import FifoMic
from tests.support.mqtt_probe import Probe
from tests.support.satellite_proc import SatelliteProcess, room_config
from tests.support.speech import speak

DEVICES = [
    InputDevice(0, "default", 32, 44100),
    InputDevice(
        3, "seeed-2mic-voicecard: bcm2835-i2s-wm8960-hifi wm8960-hifi-0 (hw:1,0)", 2, 48000
    ),
    InputDevice(7, "fifomic", 32, 44100),
]


def tone(rate: int, seconds: float, freq: float = 440.0) -> np.ndarray[Any, Any]:
    t = np.arange(int(rate * seconds)) / rate
    return (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def test_pick_device_by_index_exact_name_and_substring() -> None:
    assert pick_device(DEVICES, "7").name == "fifomic"
    assert pick_device(DEVICES, "fifomic").index == 7
    assert pick_device(DEVICES, "WM8960").index == 3


def test_pick_device_unknown_lists_what_exists() -> None:
    with pytest.raises(AudioError, match=r"'usb'.*0: default.*7: fifomic"):
        pick_device(DEVICES, "usb")


def test_assembler_passes_16k_mono_through_in_whole_frames() -> None:
    samples = np.arange(3000, dtype=np.int16)
    asm = FrameAssembler(rate=16000, channels=1, channel=0)
    frames = asm.push(samples[:1000].tobytes()) + asm.push(samples[1000:].tobytes())
    assert [len(f) for f in frames] == [FRAME_SAMPLES, FRAME_SAMPLES]
    assert np.array_equal(np.concatenate(frames), samples[: 2 * FRAME_SAMPLES])


def test_assembler_picks_the_configured_channel() -> None:
    left, right = np.full(FRAME_SAMPLES, 1, np.int16), np.full(FRAME_SAMPLES, 2, np.int16)
    interleaved = np.stack([left, right], axis=1).reshape(-1)
    (frame,) = FrameAssembler(rate=16000, channels=2, channel=1).push(interleaved.tobytes())
    assert set(frame.tolist()) == {2}


def test_assembler_resamples_48k_to_16k_keeping_the_tone() -> None:
    asm = FrameAssembler(rate=48000, channels=1, channel=0)
    source = tone(48000, 1.0)
    frames = [
        f for i in range(0, len(source), 3840) for f in asm.push(source[i : i + 3840].tobytes())
    ]
    out = np.concatenate(frames).astype(float)
    assert len(out) >= 14000
    spectrum = np.abs(np.fft.rfft(out[2000:14000]))
    peak_hz = np.argmax(spectrum) * 16000 / 12000
    assert abs(peak_hz - 440) < 5


class FakeStream:
    """Returns a chunk immediately on every read, forever (a mic nobody keeps up with)."""

    def __init__(self, produced: threading.Event, limit: int) -> None:
        self.reads = 0
        self.produced = produced
        self.limit = limit

    def read(self, n: int, exception_on_overflow: bool = True) -> bytes:
        self.reads += 1
        if self.reads == self.limit:
            self.produced.set()
        if self.reads > self.limit:
            self.produced.wait()
        return np.full(n, self.reads % 30000, np.int16).tobytes()

    def stop_stream(self) -> None: ...

    def close(self) -> None: ...


class FakePyAudio:
    """Just enough of the pyaudio module for Capture."""

    paInt16 = 8  # noqa: N815 - pyaudio's own name

    def __init__(self, stream: FakeStream) -> None:
        self.stream = stream

    def PyAudio(self) -> FakePyAudio:  # noqa: N802 - pyaudio's own name
        return self

    def get_device_count(self) -> int:
        return 1

    def get_device_info_by_index(self, index: int) -> dict[str, Any]:
        return {"name": "fake", "maxInputChannels": 1, "defaultSampleRate": 16000.0}

    def is_format_supported(self, *args: Any, **kwargs: Any) -> bool:
        return True

    def open(self, **kwargs: Any) -> FakeStream:
        return self.stream

    def terminate(self) -> None: ...


def test_capture_never_blocks_and_drops_the_oldest_chunks_when_nobody_reads() -> None:
    produced = threading.Event()
    stream = FakeStream(produced, limit=50)
    capture = Capture(
        AudioSettings(device="fake", queue_frames=8), pyaudio_module=FakePyAudio(stream)
    )
    with capture:
        assert produced.wait(5.0)
        chunks = [capture.read(timeout=1.0) for _ in range(8)]
    assert capture.dropped >= 50 - 8 - 1
    firsts = [np.frombuffer(c, np.int16)[0] for c in chunks if c is not None]
    assert firsts == sorted(firsts) and firsts[-1] >= 49


@pytest.mark.integration
def test_a_48k_stereo_mic_is_resampled_and_its_configured_channel_used(
    tmp_path: Path, broker: Broker, speech_cache: Path
) -> None:
    speech = speak("hey jarvis, turn on the kitchen lights", cache_dir=speech_cache)
    import soxr

    speech48 = soxr.resample(speech, 16000, 48000).astype(np.int16)
    noise = (np.random.default_rng(1).normal(0, 3000, len(speech48))).astype(np.int16)
    stereo = np.stack([noise, speech48], axis=1)  # the voice is on channel 1 only
    config = room_config(
        tmp_path / "salon.toml",
        port=broker.port,
        audio={"rate": 48000, "channels": 2, "channel": 1},
    )
    with (
        FifoMic(tmp_path / "mic", rate=48000, channels=2) as mic,
        Probe(broker.host, broker.port, "v1/voice_assistant/room/salon/#") as probe,
        SatelliteProcess(["run", "--config", str(config)], env=mic.env, log_path=tmp_path / "log"),
    ):
        probe.wait_for(lambda m: m.topic.endswith("/status") and b'"online":true' in m.payload, 30)
        mic.feed(stereo)
        final = probe.wait_for(lambda m: m.topic.endswith("/transcript/final"), 30)
        assert b'"text":"turn on the kitchen lights"' in final.payload


def test_assembler_resamples_the_selected_channel_of_a_stereo_stream() -> None:
    voice, other = tone(48000, 1.0, 440.0), tone(48000, 1.0, 1500.0)
    interleaved = np.stack([other, voice], axis=1).reshape(-1)
    frames = FrameAssembler(rate=48000, channels=2, channel=1).push(interleaved.tobytes())
    out = np.concatenate(frames).astype(float)
    spectrum = np.abs(np.fft.rfft(out[2000:14000]))
    assert abs(np.argmax(spectrum) * 16000 / 12000 - 440) < 5
