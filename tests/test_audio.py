"""Capture and conversion: channel selection, resampling, framing, bounded queue."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from satellite.audio.capture import Capture, FrameAssembler
from satellite.audio.health import PaceCheck, alsa_refusal
from satellite.audio.portaudio import InputDevice, pick_device
from satellite.config import AudioSettings
from satellite.core.frames import FRAME_SAMPLES
from satellite.errors import AudioError
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


class FakeMic:
    """Just enough of the pyaudio module for Capture: a device that can be missing, busy,
    failing, hanging or too fast. Reads advance a fake clock by `step` seconds (80 ms: real
    time), handed to Capture as `clock`, so the pace check needs no real waiting."""

    paInt16 = 8  # noqa: N815 - pyaudio's own name

    def __init__(self) -> None:
        self.present = True
        self.busy = False
        self.read_error: OSError | None = None
        self.step = 0.08
        self.now = 0.0
        self.reads = 0
        self.opens = 0
        self.hang = False
        self.hanging = threading.Event()
        self.unhang = threading.Event()
        self.closed = threading.Event()
        self.limit: int | None = None  # after this many reads, each read waits for `unhang`
        self.backlog = 0  # this many reads return at once (what a stall left buffered)

    def clock(self) -> float:
        return self.now

    def PyAudio(self) -> FakeMic:  # noqa: N802 - pyaudio's own name
        return self

    def get_device_count(self) -> int:
        return 1 if self.present else 0

    def get_device_info_by_index(self, index: int) -> dict[str, Any]:
        return {"name": "fake", "maxInputChannels": 1, "defaultSampleRate": 16000.0}

    def is_format_supported(self, *args: Any, **kwargs: Any) -> bool:
        return True

    def open(self, **kwargs: Any) -> FakeMic:
        if self.busy:
            raise OSError(-9985, "Device unavailable")
        self.opens += 1
        self.closed.clear()
        return self

    def read(self, n: int, exception_on_overflow: bool = True) -> bytes:
        if self.read_error is not None:
            raise self.read_error
        if self.hang or (self.limit is not None and self.reads >= self.limit):
            self.hanging.set()
            self.unhang.wait(10.0)
        self.reads += 1
        if self.backlog:
            self.backlog -= 1
            self.now += 0.0002
        else:
            self.now += self.step
        return np.full(n, self.reads % 30000, np.int16).tobytes()

    def stop_stream(self) -> None: ...

    def close(self) -> None:
        self.closed.set()

    def terminate(self) -> None: ...


class Faults:
    """Records on_fault calls; wait() for the next one."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []
        self._changed = threading.Condition()

    def __call__(self, reason: str | None) -> None:
        with self._changed:
            self.seen.append(reason)
            self._changed.notify_all()

    def wait(self, count: int, timeout: float = 5.0) -> str | None:
        """The `count`-th reason reported (1-based); AssertionError after `timeout`."""
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.seen) >= count, timeout), self.seen
            return self.seen[count - 1]


def fake_capture(mic: FakeMic, faults: Faults | None = None, queue_frames: int = 64) -> Capture:
    return Capture(
        AudioSettings(device="fake", queue_frames=queue_frames),
        pyaudio_module=mic,
        on_fault=faults or Faults(),
        clock=mic.clock,
    )


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_capture_never_blocks_and_drops_the_oldest_chunks_when_nobody_reads() -> None:
    mic = FakeMic()
    mic.limit = 50
    with fake_capture(mic, queue_frames=8) as capture:
        assert mic.hanging.wait(5.0)
        chunks, read_at = [], []
        for _ in range(8):
            chunks.append(capture.read(timeout=1.0))
            read_at.append(capture.read_at)
        mic.unhang.set()
    # Each chunk keeps the time its read returned, not the time it was taken off the queue.
    assert read_at == sorted(read_at) and time.monotonic() - 5.0 < read_at[0] < read_at[-1]
    assert capture.dropped >= 50 - 8 - 1
    firsts = [np.frombuffer(c, np.int16)[0] for c in chunks if c is not None]
    assert firsts == sorted(firsts) and firsts[-1] >= 49


def test_capture_missing_at_start_is_a_fault_then_recovers_without_raising(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mic, faults = FakeMic(), Faults()
    mic.present = False
    with (
        caplog.at_level(logging.DEBUG, logger="satellite.audio.capture"),
        fake_capture(mic, faults) as c,
    ):
        reason = faults.wait(1)
        assert reason == "microphone 'fake' unavailable: no capture device matches 'fake' " + (
            "(capture devices: none)"
        )
        assert (c.fault, c.rate, c.device, c.generation) == (reason, 0, None, 0)
        mic.present = True
        assert faults.wait(2) is None
        assert (c.fault, c.rate, c.generation) == (None, 16000, 1)
        assert c.read(timeout=1.0) is not None
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert errors == [f"{reason}; retrying every 0.5–30 s"]
    assert any("microphone 'fake' recovered after" in r.getMessage() for r in caplog.records)


def test_capture_read_error_is_a_fault_and_the_device_is_reopened() -> None:
    mic, faults = FakeMic(), Faults()
    with fake_capture(mic, faults) as capture:
        assert capture.read(timeout=1.0) is not None and capture.generation == 1
        mic.read_error = OSError(-9999, "Unanticipated host error")
        assert faults.wait(1) == (
            "microphone 'fake' read failed: [Errno -9999] Unanticipated host error"
        )
        assert mic.closed.is_set()
        wait_until(lambda: mic.opens >= 2)  # retried, still failing: no new report
        assert faults.seen == [capture.fault]
        mic.read_error = None
        assert faults.wait(2) is None
        assert capture.generation >= 3


def test_capture_busy_device_is_a_fault_naming_it_then_recovers() -> None:
    mic, faults = FakeMic(), Faults()
    mic.busy = True
    with fake_capture(mic, faults) as capture:
        reason = faults.wait(1)
        assert reason is not None
        assert "'fake'" in reason and "device or resource busy" in reason
        mic.busy = False
        assert faults.wait(2) is None
        assert capture.fault is None


def test_capture_audio_faster_than_real_time_is_a_fault() -> None:
    mic, faults = FakeMic(), Faults()
    with fake_capture(mic, faults) as capture:
        wait_until(lambda: mic.reads > 20)
        assert faults.seen == []  # real time: no fault
        mic.step = 0.001  # a FIFO whose writer left: stale audio at once
        reason = faults.wait(1)
        assert reason is not None and "faster than real time" in reason
        assert mic.closed.is_set()
        mic.step = 0.08
        assert faults.wait(2) is None
        assert capture.generation >= 2


def paced(check: PaceCheck, start: float, reads: int, step: float = 0.08) -> list[float]:
    """How far ahead the device is after each of `reads` reads `step` s apart from `start`."""
    return [check.add(start + step * i) for i in range(reads)]


def test_capture_a_stall_of_our_own_then_its_backlog_is_no_fault() -> None:
    mic, faults = FakeMic(), Faults()
    mic.limit = 30
    with fake_capture(mic, faults, queue_frames=200) as capture:
        assert mic.hanging.wait(5.0)
        mic.now += 5.0  # the process was stopped for 5 s in that read
        mic.backlog = 62  # while the device recorded on
        mic.limit = None
        mic.unhang.set()
        wait_until(lambda: mic.reads > 200)
        assert faults.seen == [] and capture.fault is None and capture.generation == 1


def test_pace_check_allows_a_backlog_and_catches_a_sustained_rush() -> None:
    check = PaceCheck(0.08, opened_at=0.0)
    opened = paced(check, 0.0, 5, step=0.0)  # four periods buffered at the open
    assert not any(check.too_fast(ahead) for ahead in opened + paced(check, 0.08, 30))
    assert check.settled
    rushed = paced(check, 2.5, 10, step=0.001)  # a FIFO whose writer left: stale at once
    first = next(i for i, ahead in enumerate(rushed) if check.too_fast(ahead))
    assert first <= 7


@pytest.mark.parametrize("stall_s", [3.0, 5.0, 8.0])
def test_pace_check_takes_the_burst_after_a_stall_of_our_own_for_no_fault(stall_s: float) -> None:
    # The process stopped (SIGSTOP, swapping) while the device went on recording: one read
    # returns `stall_s` late, then the whole backlog comes at once, then real time again.
    check = PaceCheck(0.08, opened_at=0.0)
    before = paced(check, 0.08, 50)
    resumed = 51 * 0.08 + stall_s
    backlog = round(stall_s / 0.08)
    burst = paced(check, resumed, backlog, step=0.0002)
    after = paced(check, resumed + 0.1, 100)
    assert max(before + burst + after) < check.slack_s / 2
    # A device that dies during the stall is still caught once the backlog's credit is spent.
    dead = paced(check, resumed + 10.0, 2 * backlog, step=0.0002)
    assert check.too_fast(dead[-1])
    # Stopped before the first read returned: the gap counts from the open.
    check = PaceCheck(0.08, opened_at=0.0)
    assert max(paced(check, stall_s, backlog, step=0.0002)) < check.slack_s / 2


def test_pace_check_lets_a_device_clock_drift_and_catches_a_steady_1_5x() -> None:
    check = PaceCheck(0.08, opened_at=0.0)
    assert max(paced(check, 0.0, 50_000, step=0.08 * 0.998)) < 0.2  # 2000 ppm fast, 66 min
    check = PaceCheck(0.08, opened_at=0.0)
    assert check.too_fast(max(paced(check, 0.0, 500, step=0.08 / 1.5)))


def test_heartbeat_advances_while_retrying() -> None:
    mic = FakeMic()
    mic.present = False
    with fake_capture(mic) as capture:
        wait_until(lambda: capture.heartbeat >= 2, timeout=5.0)
        assert capture.fault is not None


def test_heartbeat_stops_while_a_read_hangs_and_close_stays_bounded() -> None:
    mic = FakeMic()
    capture = fake_capture(mic)
    capture.open()
    wait_until(lambda: capture.heartbeat >= 3)
    mic.hang = True
    assert mic.hanging.wait(5.0)
    stuck = capture.heartbeat
    time.sleep(1.5)  # the window in which nothing may happen: longer than a heartbeat
    assert capture.heartbeat == stuck
    assert capture.fault is None  # a hang is not a fault: the watchdog judges it
    started = time.monotonic()
    capture.close()
    capture.close()
    assert time.monotonic() - started < 2.0
    assert not mic.closed.is_set()  # never closed under a blocked read
    mic.unhang.set()
    assert mic.closed.wait(5.0)  # the thread releases the device once the read returns


def test_close_is_bounded_while_retrying() -> None:
    mic = FakeMic()
    mic.present = False
    capture = fake_capture(mic)
    capture.open()
    started = time.monotonic()
    capture.close()
    assert time.monotonic() - started < 1.0


def test_open_is_idempotent_and_close_before_open_is_harmless() -> None:
    mic = FakeMic()
    capture = fake_capture(mic)
    assert (capture.rate, capture.device, capture.generation, capture.fault) == (0, None, 0, None)
    capture.close()
    capture = fake_capture(mic)
    capture.open()
    capture.open()
    capture.close()
    assert mic.opens == 1


def test_a_failing_fault_callback_does_not_stop_the_capture() -> None:
    mic = FakeMic()
    mic.present = False

    def broken(reason: str | None) -> None:
        raise RuntimeError("bug in the callback")

    capture = Capture(AudioSettings(device="fake"), pyaudio_module=mic, on_fault=broken)
    with capture:
        mic.present = True
        wait_until(lambda: capture.generation == 1)


def test_alsa_refusal_is_none_for_a_pcm_alsa_does_not_know() -> None:
    assert alsa_refusal("no-such-pcm-here") is None


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
