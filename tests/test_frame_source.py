"""The one frame loop: frames from the capture, and a machine that keeps raising kept in bounds."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest

from satellite.audio.capture import Capture
from satellite.audio.frame_source import FAILURE_LOG_S, FrameProcessor, FrameSource
from satellite.config import AudioSettings, Settings
from satellite.core.frames import FRAME_S, FRAME_SAMPLES, Frame
from satellite.core.requests import Abandon, Listen
from satellite.core.session import (
    Detection,
    Event,
    FaultChanged,
    Idle,
    Listening,
    SessionMachine,
    SttUpdate,
    Transcript,
)
from satellite.core.utterance import Preroll
from satellite.runtime.engines import session_timing
from satellite.runtime.pipeline import Pipeline
from tests.test_audio import FakeMic

LOGGER = "satellite.audio.frame_source"


class BrokenDetector:
    """Raises on every frame while `broken`; never detects."""

    def __init__(self) -> None:
        self.broken = True

    def process(self, frame: Frame) -> Detection | None:
        if self.broken:
            raise ValueError("onnx says no")
        return None

    def reset(self) -> None: ...


class NoTranscriber:
    def start(self, preroll: Preroll) -> None: ...

    def feed(self, frame: Frame) -> SttUpdate:
        return SttUpdate(partial="")

    def finish(self) -> Transcript | None:
        return None


def broken_machine() -> tuple[SessionMachine, BrokenDetector]:
    detector = BrokenDetector()
    timing = session_timing(Settings(room_id="salon"))
    return SessionMachine(detector=detector, transcriber=NoTranscriber(), timing=timing), detector


def faults(events: list[Event]) -> list[str | None]:
    return [event.reason for event in events if isinstance(event, FaultChanged)]


def records_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER]


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_a_machine_failing_every_frame_logs_a_bounded_number_of_lines_and_is_a_fault(
    caplog: pytest.LogCaptureFixture,
) -> None:
    machine, detector = broken_machine()
    now = [0.0]
    processor = FrameProcessor(clock=lambda: now[0])
    frame = np.zeros(FRAME_SAMPLES, np.int16)
    events: list[Event] = []
    frames = 3000  # 4 minutes of audio
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        for _ in range(frames):
            events += processor.process(machine, frame)
            now[0] += FRAME_S
        failing = records_of(caplog)
        detector.broken = False
        recovered = processor.process(machine, frame)
    minutes = frames * FRAME_S
    assert processor.failed == frames and processor.processed == 1
    # One line per FAILURE_LOG_S, not one per frame; only the first with the traceback.
    assert 1 < len(failing) <= minutes / FAILURE_LOG_S + 1, [r.getMessage() for r in failing]
    assert failing[0].exc_info is not None
    assert all(r.exc_info is None for r in failing[1:])
    assert "failed since the last report" in failing[1].getMessage()
    # A fault once (state `error` on MQTT), cleared by the first frame that processes.
    assert len(faults(events)) == 1 and "onnx says no" in str(faults(events)[0])
    assert faults(recovered) == [None]


def test_a_single_failing_frame_is_logged_but_no_fault() -> None:
    machine, detector = broken_machine()
    processor = FrameProcessor()
    frame = np.zeros(FRAME_SAMPLES, np.int16)
    assert processor.process(machine, frame) == []
    detector.broken = False
    assert processor.process(machine, frame) == []
    assert (processor.failed, processor.processed) == (1, 1)


def fake_capture(mic: FakeMic) -> Capture:
    return Capture(AudioSettings(device="fake"), pyaudio_module=mic, clock=mic.clock)


def test_the_frame_source_hands_over_whole_frames_and_runs_its_turn_between_reads() -> None:
    mic = FakeMic()
    stop = threading.Event()
    frames: list[Frame] = []
    turns: list[int] = []

    def on_frame(frame: Frame) -> None:
        frames.append(frame)
        if len(frames) >= 20:
            stop.set()

    with fake_capture(mic) as capture:
        FrameSource(capture).run(on_frame, stop, between_reads=lambda: turns.append(1))
    assert len(frames) == 20 and all(len(f) == FRAME_SAMPLES for f in frames)
    assert len(turns) >= 20  # a turn before every read, frames or not


def test_the_daemons_pipeline_reports_a_failing_machine_as_a_fault_and_logs_it_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    machine, detector = broken_machine()
    events: list[Event] = []
    with caplog.at_level(logging.DEBUG, logger=LOGGER), fake_capture(FakeMic()) as capture:
        pipeline = Pipeline(capture=capture, machine=machine, on_event=events.append)
        pipeline.start()
        try:
            wait_until(lambda: pipeline.processor.failed >= 300)
            assert pipeline.frames_processed == 0  # so the watchdog stops its pings
            assert len(faults(events)) == 1
            assert len(records_of(caplog)) == 1
            detector.broken = False
            wait_until(lambda: pipeline.frames_processed > 0 and faults(events)[-1] is None)
        finally:
            pipeline.stop()


def test_the_pipeline_hands_freed_memory_back_once_a_session_is_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After the events of an Idle (the decode's memory is garbage then), not before."""
    released: list[int] = []
    events: list[Event] = []
    monkeypatch.setattr(
        "satellite.runtime.pipeline.release_freed_memory", lambda: released.append(len(events))
    )
    detector = BrokenDetector()
    detector.broken = False
    # The fake microphone runs faster than real time: no end but the one asked for.
    timing = replace(session_timing(Settings(room_id="salon")), max_utterance_s=3600.0)
    machine = SessionMachine(detector=detector, transcriber=NoTranscriber(), timing=timing)
    with fake_capture(FakeMic()) as capture:
        pipeline = Pipeline(capture=capture, machine=machine, on_event=events.append)
        pipeline.start()
        try:
            pipeline.request(Listen(session_id="s1", no_speech_timeout_s=3600.0))
            wait_until(lambda: any(isinstance(e, Listening) for e in events))
            assert released == []
            pipeline.request(Abandon("s1"))
            wait_until(lambda: bool(released))
        finally:
            pipeline.stop()
    assert [type(e) for e in events] == [Listening, Idle]
    assert released == [2]
