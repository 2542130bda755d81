"""The pure session machine, driven with plain arrays and small fakes."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from typing import cast

import numpy as np
import pytest

from satellite.config import Settings
from satellite.core.frames import FRAME_S, FRAME_SAMPLES, Frame, split_frames
from satellite.core.requests import Abandon, Listen, SetFault, SetMuted
from satellite.core.session import (
    Detection,
    EndReason,
    FaultChanged,
    Final,
    Idle,
    Interim,
    Listening,
    MuteChanged,
    SessionMachine,
    SttUpdate,
    Transcript,
    WakeDetected,
    speech_level_db,
)
from satellite.core.utterance import Preroll, UtteranceTuning, VoiceEnd
from satellite.runtime.engines import session_timing

TIMING = session_timing(Settings(room_id="salon"))  # the room defaults
LOUD = 1000
LOUD_OVER_SILENCE_DB = 20 * math.log10(LOUD / 32768) + 80  # -30.3 dBFS over the -80 clamp


def approx(value: float, abs: float) -> float:
    """pytest.approx(value, abs=abs), typed as the float it compares equal to."""
    return cast(float, pytest.approx(value, abs=abs))


def frame(value: int = 0) -> Frame:
    return np.full(FRAME_SAMPLES, value, np.int16)


@dataclass
class FakeDetector:
    """Fires on frames whose first sample is LOUD."""

    resets: int = 0

    def process(self, f: Frame) -> Detection | None:
        return Detection("hey_jarvis", 0.9) if f[0] == LOUD else None

    def reset(self) -> None:
        self.resets += 1


@dataclass
class FakeTranscriber:
    """Replays a script of SttUpdates, one per frame; then repeats the last partial."""

    script: list[SttUpdate] = field(default_factory=list)
    flush: Transcript | None = None
    starts: list[Preroll] = field(default_factory=list)
    fed: int = 0

    @property
    def prerolls(self) -> list[int]:
        """The length of each pre-roll the recogniser started with."""
        return [len(preroll.audio) for preroll in self.starts]

    def start(self, preroll: Preroll) -> None:
        self.starts.append(preroll)
        self.fed = 0

    def feed(self, f: Frame) -> SttUpdate:
        self.fed += 1
        if self.fed <= len(self.script):
            return self.script[self.fed - 1]
        return SttUpdate(partial=self.script[-1].partial if self.script else "")

    def finish(self) -> Transcript | None:
        return self.flush


def machine(transcriber: FakeTranscriber, **timing: float) -> SessionMachine:
    counter = itertools.count(1)
    return SessionMachine(
        detector=FakeDetector(),
        transcriber=transcriber,
        timing=replace(TIMING, **timing),
        new_id=lambda: f"id{next(counter)}",
    )


def run(m: SessionMachine, frames: list[Frame]) -> list[object]:
    return [event for f in frames for event in m.process(f)]


def seconds(s: float) -> int:
    return math.ceil(s / FRAME_S - 1e-9)


HELLO = Transcript("turn on the lights", 0.9)
TUNING = UtteranceTuning()


def test_session_wake_listen_interims_final_idle_in_order() -> None:
    script = [SttUpdate("turn"), SttUpdate("turn"), SttUpdate("turn on"), SttUpdate("", HELLO)]
    m = machine(FakeTranscriber(script))
    events = run(m, [frame(), frame(LOUD), *[frame()] * 4])
    assert events == [
        WakeDetected("id1", "hey_jarvis", 0.9, approx(LOUD_OVER_SILENCE_DB, abs=0.01)),
        Listening("id1", "id2"),
        Interim("id1", "id2", "turn", 1),
        Interim("id1", "id2", "turn on", 2),
        Final("id1", "id2", HELLO),
        Idle("id1", EndReason.FINAL),
    ]


def test_session_preroll_ends_with_the_detecting_frame_and_is_bounded() -> None:
    t = FakeTranscriber([SttUpdate("", HELLO)])
    m = machine(t, preroll_s=0.4)
    run(m, [*[frame()] * 20, frame(LOUD), frame()])
    assert t.prerolls == [seconds(0.4) * FRAME_SAMPLES]


def test_session_wake_detected_goes_out_before_the_recogniser_decodes_the_preroll() -> None:
    t = FakeTranscriber([SttUpdate("", HELLO)])
    m = machine(t)
    opened = run(m, [*[frame()] * 5, frame(LOUD)])
    assert [type(e) for e in opened] == [WakeDetected, Listening]
    assert t.prerolls == []  # the pre-roll costs Vosk 0.1-0.4 s: not before wake_detected
    run(m, [frame()])
    assert t.prerolls == [6 * FRAME_SAMPLES]


def test_session_no_speech_times_out_to_idle_without_final() -> None:
    m = machine(FakeTranscriber([]), no_speech_timeout_s=1.0)
    events = run(m, [frame(LOUD), *[frame()] * seconds(1.0)])
    assert events[-1] == Idle("id1", EndReason.NO_SPEECH)
    assert not any(isinstance(e, Final) for e in events)
    assert m.process(frame()) == []


def test_session_trailing_silence_ends_with_flushed_transcript() -> None:
    t = FakeTranscriber([SttUpdate("turn on")], flush=HELLO)
    m = machine(t, trailing_silence_s=0.8)
    events = run(m, [frame(LOUD), *[frame()] * (1 + seconds(0.8))])
    assert events[-2:] == [Final("id1", "id2", HELLO), Idle("id1", EndReason.FINAL)]


def test_session_trailing_silence_not_reached_keeps_listening() -> None:
    t = FakeTranscriber([SttUpdate("turn on")], flush=HELLO)
    m = machine(t, trailing_silence_s=0.8)
    run(m, [frame(LOUD), *[frame()] * seconds(0.8)])
    assert m.listening


def test_session_max_length_cuts_a_never_ending_utterance() -> None:
    growing = [SttUpdate("word " * (i + 1)) for i in range(100)]
    m = machine(FakeTranscriber(growing, flush=HELLO), max_utterance_s=2.0)
    events = run(m, [frame(LOUD), *[frame()] * seconds(2.0)])
    assert events[-2:] == [Final("id1", "id2", HELLO), Idle("id1", EndReason.FINAL)]


def test_session_empty_flush_at_max_length_is_no_speech() -> None:
    m = machine(FakeTranscriber([SttUpdate("uh")], flush=None), trailing_silence_s=0.4)
    events = run(m, [frame(LOUD), *[frame()] * 10])
    assert Idle("id1", EndReason.NO_SPEECH) in events


def test_session_refractory_ignores_wake_right_after_a_session() -> None:
    m = machine(FakeTranscriber([SttUpdate("", HELLO)]), refractory_s=0.8)
    run(m, [frame(LOUD), frame()])
    assert run(m, [frame(LOUD)] * seconds(0.8)) == []
    assert isinstance(m.process(frame(LOUD))[0], WakeDetected)


def test_session_detector_is_reset_when_a_session_ends() -> None:
    m = machine(FakeTranscriber([SttUpdate("", HELLO)]))
    run(m, [frame(LOUD), frame()])
    assert isinstance(m.detector, FakeDetector)
    assert m.detector.resets == 1


def test_session_each_wake_gets_fresh_session_and_utterance_ids() -> None:
    m = machine(FakeTranscriber([SttUpdate("", HELLO)]), refractory_s=0)
    first = run(m, [frame(LOUD), frame()])
    second = run(m, [frame(LOUD), frame()])
    assert first[0] == WakeDetected("id1", "hey_jarvis", 0.9)
    assert second[0] == WakeDetected("id3", "hey_jarvis", 0.9)
    assert second[1] == Listening("id3", "id4")


def test_session_no_wake_no_events() -> None:
    m = machine(FakeTranscriber([]))
    assert run(m, [frame(5)] * 100) == []


def test_session_muted_ignores_the_wake_word_and_feeds_nothing() -> None:
    t = FakeTranscriber([SttUpdate("", HELLO)])
    m = machine(t)
    assert m.set_muted(True) == [MuteChanged("id1", True)]
    assert run(m, [frame(LOUD)] * 5) == []
    assert t.prerolls == []
    assert m.set_muted(True) == []


def test_session_unmute_restores_detection() -> None:
    m = machine(FakeTranscriber([SttUpdate("", HELLO)]))
    m.set_muted(True)
    assert m.set_muted(False) == [MuteChanged("id2", False)]
    assert isinstance(m.process(frame(LOUD))[0], WakeDetected)


def test_session_mute_mid_utterance_drops_it_without_a_final() -> None:
    m = machine(FakeTranscriber([SttUpdate("turn on")], flush=HELLO))
    run(m, [frame(LOUD), frame()])
    assert m.set_muted(True) == [Idle("id1", EndReason.MUTED), MuteChanged("id3", True)]
    assert not m.listening


def test_session_listen_opens_a_session_without_wake_word_or_preroll() -> None:
    t = FakeTranscriber([SttUpdate("", HELLO)])
    m = machine(t)
    run(m, [frame(5)] * 10)
    assert m.listen() == [Listening("id1", "id2")]
    assert run(m, [frame()]) == [Final("id1", "id2", HELLO), Idle("id1", EndReason.FINAL)]
    assert t.prerolls == [0]


def test_session_follow_up_is_a_new_utterance_in_the_same_session_with_its_own_timeout() -> None:
    m = machine(FakeTranscriber([]), no_speech_timeout_s=5.0)
    assert m.listen("s1", no_speech_timeout_s=0.8) == [Listening("s1", "id1")]
    events = run(m, [frame()] * seconds(0.8))
    assert events == [Idle("s1", EndReason.NO_SPEECH)]


def test_session_listen_is_ignored_while_muted_or_listening() -> None:
    m = machine(FakeTranscriber([]))
    m.listen()
    assert m.listen() == []
    m.set_muted(True)
    assert m.listen() == []


def test_session_microphone_fault_ends_an_utterance_and_is_announced() -> None:
    m = machine(FakeTranscriber([SttUpdate("turn on")], flush=HELLO))
    run(m, [frame(LOUD), frame()])
    assert m.set_fault("gone") == [Idle("id1", EndReason.FAULT), FaultChanged("id3", "gone")]
    assert m.set_fault(None) == [FaultChanged("id4", None)]


def frames_until_final(
    script: list[SttUpdate], *, trailing_s: float, audio: list[Frame] | None = None
) -> int:
    """Listening frames fed (after the one that woke) until the machine gives its final.

    With `audio`, those are the frames and the machine tracks the voice (VoiceEnd).
    """
    voice = VoiceEnd(tuning=TUNING) if audio is not None else None
    m = machine(FakeTranscriber(script, flush=HELLO), trailing_silence_s=trailing_s)
    m.voice = voice
    run(m, [frame(LOUD)])
    frames = audio if audio is not None else [frame()] * len(script)
    for n, f in enumerate(frames, start=1):
        if any(isinstance(e, Final) for e in m.process(f)):
            return n
    raise AssertionError("no final")


def voiced_then_silent(voiced_s: float, total_s: float) -> list[Frame]:
    """A 440 Hz voice at -20 dBFS for `voiced_s`, then room tone at about -60 dBFS."""
    rng = np.random.default_rng(0)
    n = round(total_s * 16000)
    audio = rng.normal(0.0, 30.0, n)
    t = np.arange(round(voiced_s * 16000)) / 16000
    audio[: len(t)] += 0.1 * 32768 * np.sqrt(2) * np.sin(2 * np.pi * 440 * t)
    samples = np.round(audio).astype(np.int16)
    frames = [samples[i : i + FRAME_SAMPLES] for i in range(0, n, FRAME_SAMPLES)]
    return [f for f in frames if len(f) == FRAME_SAMPLES]


def test_session_ends_on_trailing_silence_of_the_voice_not_the_late_partial() -> None:
    """Vosk names words about a second late: the silence is timed on the audio instead."""
    late = [SttUpdate("")] * 12 + [SttUpdate("turn on")] * 40
    audio = voiced_then_silent(0.45, 52 * FRAME_S)
    # Voice until 0.45 s; 0.8 s of silence is reached at 1.25 s, in frame 16 (1.20-1.28 s).
    assert frames_until_final(late, trailing_s=0.8, audio=audio) == 16
    # On the partial alone: 10 frames after it last changed (frame 13).
    assert frames_until_final(late, trailing_s=0.8) == 23


def wake_then(*parts: tuple[str, float], detect_after_s: float) -> list[Frame]:
    """5 s of room tone, then voice and pauses (whole frames each); the detector fires on
    the frame that ends `detect_after_s` into them."""
    lead = voiced_then_silent(0.0, 5.0)
    audio = np.concatenate(
        [*lead, *[f for k, t in parts for f in voiced_then_silent(t if k == "voice" else 0, t)]]
    )
    frames = [f.copy() for f in split_frames(audio)]
    frames[len(lead) + round(detect_after_s / FRAME_S) - 1][0] = LOUD
    return frames


def started(frames: list[Frame], tuning: UtteranceTuning = TUNING) -> Preroll:
    """The pre-roll a machine that tracks the voice started its recogniser with."""
    t = FakeTranscriber([SttUpdate("")])
    m = machine(t, preroll_s=1.6)
    m.voice = VoiceEnd(tuning=tuning)
    events = run(m, frames)
    assert isinstance(events[0], WakeDetected)
    assert len(t.starts) == 1
    return t.starts[0]


def test_session_starts_the_recogniser_in_the_pause_after_the_wake_word() -> None:
    frames = wake_then(("voice", 0.96), ("pause", 0.24), ("voice", 0.96), detect_after_s=1.52)
    preroll = started(frames)
    # The pause is 0.56-0.32 s before the detection: the recogniser starts in its middle and
    # also has the 0.24 s it waited for.
    assert preroll.wake_end_s == 0.0
    assert preroll.detected_s == pytest.approx(0.44, abs=0.011)
    assert len(preroll.audio) == pytest.approx((0.44 + TUNING.pause_wait_s) * 16000, abs=160)


def test_session_waits_for_the_pause_when_the_detection_came_inside_the_wake_word() -> None:
    frames = wake_then(("voice", 0.88), ("pause", 0.24), ("voice", 0.96), detect_after_s=0.8)
    preroll = started(frames)
    # The pause starts 0.08 s after the detection; 0.16 s of it is in by the decision.
    assert preroll.wake_end_s == 0.0
    assert preroll.detected_s == pytest.approx(-0.16, abs=0.011)
    assert len(preroll.audio) == pytest.approx(0.08 * 16000, abs=160)


def test_session_decodes_the_whole_preroll_when_there_was_no_pause() -> None:
    preroll = started(wake_then(("voice", 3.0), detect_after_s=1.6))
    assert preroll.wake_end_s is None  # found from Vosk's words instead
    assert preroll.detected_s == pytest.approx(1.6)
    assert len(preroll.audio) == round((1.6 + TUNING.pause_wait_s) * 16000)


def test_session_waits_for_the_pause_as_long_as_the_tuning_says() -> None:
    longer = UtteranceTuning(pause_wait_s=0.4)
    preroll = started(wake_then(("voice", 3.0), detect_after_s=1.6), longer)
    assert len(preroll.audio) == round((1.6 + 0.4) * 16000)


def test_session_words_heard_then_withdrawn_end_after_the_trailing_silence() -> None:
    """An interim went out, then Vosk took the words back: no 15 s wait for max_utterance."""
    script = [SttUpdate("volume")] * 3 + [SttUpdate("")] * 40
    assert frames_until_final(script, trailing_s=0.8) == 4 + 10  # emptied on frame 4


# --- the wake word's level, for arbitration ------------------------------------------------


def test_speech_level_is_the_loudest_frame_over_the_floor() -> None:
    frames = [frame(10), frame(LOUD), frame(100)]
    assert speech_level_db(frames, -60.0) == pytest.approx(20 * math.log10(LOUD / 32768) + 60)
    # A floor of digital silence counts as a very quiet room, not as an infinitely good one.
    assert speech_level_db(frames, -100.0) == speech_level_db(frames, -80.0)


def test_wake_level_uses_the_last_second_and_the_voice_trackers_floor() -> None:
    voice = VoiceEnd(tuning=TUNING)
    m = SessionMachine(
        detector=FakeDetector(),
        transcriber=FakeTranscriber([SttUpdate("", HELLO)]),
        timing=TIMING,
        voice=voice,
        new_id=lambda: "s",
    )
    louder_long_ago = [frame(20000), *[frame(30)] * seconds(1.5)]
    events = run(m, [*[frame(30)] * 10, *louder_long_ago, frame(300), frame(LOUD)])
    wake = events[0]
    assert isinstance(wake, WakeDetected)
    assert voice.floor_dbfs == pytest.approx(20 * math.log10(30 / 32768), abs=0.01)
    # LOUD is the loudest frame of the last second; 20000 was heard 1.6 s before.
    assert wake.level_db == pytest.approx(20 * math.log10(LOUD / 30), abs=0.01)


@dataclass
class NthFrameDetector:
    """Fires on the `nth` frame it is given."""

    nth: int
    seen: int = 0

    def process(self, f: Frame) -> Detection | None:
        self.seen += 1
        return Detection("hey_jarvis", 0.9) if self.seen == self.nth else None

    def reset(self) -> None:
        pass


def test_wake_level_is_the_same_number_at_any_gain() -> None:
    def level(gain: float) -> float:
        m = SessionMachine(
            detector=NthFrameDetector(21),
            transcriber=FakeTranscriber([SttUpdate("", HELLO)]),
            timing=TIMING,
        )
        quiet, voice = frame(round(40 * gain)), frame(round(800 * gain))
        (wake, _) = run(m, [*[quiet] * 20, voice])
        assert isinstance(wake, WakeDetected)
        return wake.level_db

    assert level(1.0) == pytest.approx(level(0.25), abs=0.1)
    assert level(1.0) == pytest.approx(20 * math.log10(800 / 40), abs=0.1)


def test_a_short_preroll_still_measures_a_second_and_hands_over_only_the_preroll() -> None:
    t = FakeTranscriber([SttUpdate("", HELLO)])
    m = machine(t, preroll_s=0.16)
    events = run(m, [frame(30), frame(5000), *[frame(30)] * 8, frame(LOUD), frame()])
    assert isinstance(events[0], WakeDetected)
    assert events[0].level_db == pytest.approx(20 * math.log10(5000 / 30), abs=0.01)
    assert t.prerolls == [2 * FRAME_SAMPLES]


def test_abandon_ends_that_sessions_utterance_without_a_final() -> None:
    t = FakeTranscriber([SttUpdate("turn"), SttUpdate("turn on")])
    m = machine(t)
    events = run(m, [frame(LOUD), frame()])
    session = events[0].session_id  # type: ignore[attr-defined]
    assert m.abandon("another session") == []
    assert m.abandon(session) == [Idle(session, EndReason.LOST)]
    assert not m.listening
    assert m.abandon(session) == []
    # Re-armed as after any session: refractory, then a new wake word opens a new session.
    assert run(m, [frame(LOUD)] * seconds(2.0)) == []
    assert isinstance(run(m, [frame(LOUD)])[0], WakeDetected)


def test_requests_are_applied_as_the_machine_methods_they_name() -> None:
    m = machine(FakeTranscriber([]))
    assert m.apply(Listen(session_id=None, no_speech_timeout_s=None)) == [Listening("id1", "id2")]
    assert m.apply(Abandon("another session")) == []
    assert m.apply(Abandon("id1")) == [Idle("id1", EndReason.LOST)]
    assert m.apply(Listen("s1", 0.8)) == [Listening("s1", "id3")]
    assert run(m, [frame()] * seconds(0.8)) == [Idle("s1", EndReason.NO_SPEECH)]
    assert m.apply(SetMuted(True)) == [MuteChanged("id4", True)] and m.muted
    assert m.apply(SetMuted(False)) == [MuteChanged("id5", False)] and not m.muted
    assert m.apply(SetFault("gone")) == [FaultChanged("id6", "gone")]
    assert m.apply(SetFault(None)) == [FaultChanged("id7", None)]


def test_a_machine_handed_over_hears_on_with_the_pre_roll_refractory_and_mute() -> None:
    """A reload's swap: the next wake word's pre-roll includes frames heard before it."""
    old = machine(FakeTranscriber([SttUpdate("", HELLO)]), refractory_s=0.8, preroll_s=2.0)
    run(old, [frame(LOUD), frame()])  # a session ended: the refractory period runs
    run(old, [frame(7)] * 3)
    t = FakeTranscriber([SttUpdate("", HELLO)])
    new = old.hand_over(machine(t, refractory_s=0.8, preroll_s=2.0))
    assert run(new, [frame(LOUD)] * (seconds(0.8) - 3)) == []  # what was left of it
    events = run(new, [frame(LOUD), frame()])
    assert isinstance(events[0], WakeDetected)
    assert t.prerolls == [(seconds(0.8) + 1) * FRAME_SAMPLES]
    assert t.starts[0].audio[0] == 7  # heard by the old machine
    muted = machine(FakeTranscriber([]))
    muted.set_muted(True)
    assert muted.hand_over(machine(FakeTranscriber([]))).muted


def test_a_machine_hearing_an_utterance_does_not_hand_over() -> None:
    old = machine(FakeTranscriber([SttUpdate("turn")]))
    run(old, [frame(LOUD)])
    with pytest.raises(RuntimeError, match="in progress"):
        old.hand_over(machine(FakeTranscriber([])))
