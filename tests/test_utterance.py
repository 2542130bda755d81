"""The utterance's pure rules: the voice end, both pause finders and the wake-word cut."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import FrozenInstanceError, fields

import numpy as np
import pytest

from benchmarks.signals import room_tone
from satellite.core.frames import SAMPLE_RATE, Frame, split_frames
from satellite.core.utterance import (
    TimedWord,
    UtteranceTuning,
    VoiceEnd,
    command_words,
    pause_awaited,
    pause_in_audio,
    recogniser_preroll,
    wake_end_in_words,
)

TUNING = UtteranceTuning()
WAKE = frozenset({"hey", "jarvis"})


def test_the_tuning_is_frozen_and_every_constant_has_a_unit_and_a_reason() -> None:
    with pytest.raises(FrozenInstanceError):
        TUNING.pause_wait_s = 1.0  # type: ignore[misc]
    lines = inspect.getsource(UtteranceTuning).splitlines()
    for f in fields(UtteranceTuning):
        assert f.name.endswith(("_s", "_db")), f.name
        at = next(i for i, line in enumerate(lines) if line.startswith(f"    {f.name}:"))
        assert lines[at - 1].lstrip().startswith("#"), f"{f.name} has no comment saying why"


def tone(level_dbfs: float, frames: int = 1) -> list[Frame]:
    """Frames of a 440 Hz sine at an RMS of `level_dbfs`."""
    amplitude = 32768.0 * 10 ** (level_dbfs / 20) * np.sqrt(2)
    t = np.arange(frames * 1280) / SAMPLE_RATE
    return split_frames(np.round(amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.int16))


def pause(audio: Frame, floor_dbfs: float, detected_at: int | None = None) -> int | None:
    return pause_in_audio(audio, floor_dbfs, detected_at, tuning=TUNING)


# --- the voice end and the pause in the audio ----------------------------------------------


def test_voice_end_times_silence_to_the_10_ms_window() -> None:
    voice = VoiceEnd(tuning=TUNING)
    for frame in split_frames(room_tone(6.0)):
        voice.update(frame)
    speech = np.concatenate(tone(-20.0, 5))[: round(0.35 * SAMPLE_RATE)]
    audio = np.concatenate([speech, room_tone(1.25, seed=3)[: 1280 * 10 - len(speech)]])
    silences = [voice.update(frame) for frame in split_frames(audio)]
    # Voice until 0.35 s: silence 0.05 s at the end of frame 5 (0.40 s), then +0.08 per frame.
    assert silences[:4] == [0.0] * 4
    assert silences[4] == pytest.approx(0.05, abs=0.011)
    assert silences[9] == pytest.approx(0.45, abs=0.011)


def spoken(*parts: tuple[str, float]) -> Frame:
    """Room tone (about -61 dBFS) with a -20 dBFS tone where a part is "voice"."""
    pieces: list[Frame] = []
    for kind, seconds in parts:
        n = round(seconds * SAMPLE_RATE)
        noise = room_tone(seconds, seed=len(pieces))[:n].astype(np.float64)
        if kind == "voice":
            t = np.arange(n) / SAMPLE_RATE
            noise += 0.1 * 32768 * np.sqrt(2) * np.sin(2 * np.pi * 440 * t)
        pieces.append(np.round(noise).astype(np.int16))
    return np.concatenate(pieces)


FLOOR = -61.0  # room_tone's level


def test_pause_in_audio_is_the_middle_of_the_pause_after_the_wake_word() -> None:
    audio = spoken(("pause", 0.3), ("voice", 0.8), ("pause", 0.2), ("voice", 0.2))
    assert pause(audio, FLOOR) == pytest.approx(1.2 * SAMPLE_RATE, abs=160)


def test_a_pause_still_going_at_the_detection_counts() -> None:
    audio = spoken(("pause", 0.3), ("voice", 0.8), ("pause", 0.3))
    assert pause(audio, FLOOR) == pytest.approx(1.25 * SAMPLE_RATE, abs=160)


def test_a_pause_after_the_detection_counts_and_the_window_is_before_the_detection() -> None:
    audio = spoken(("pause", 0.3), ("voice", 0.8), ("pause", 0.2), ("voice", 0.2))
    # Detected 0.1 s into "jarvis": the pause after it (0.2 s later) is found.
    detected = round(0.6 * SAMPLE_RATE)
    assert pause(audio, FLOOR, detected) == pytest.approx(1.2 * SAMPLE_RATE, abs=160)
    # Detected late, 0.8 s after the pause ended: too long after it to be the wake word's.
    late = spoken(("voice", 0.8), ("pause", 0.2), ("voice", 1.0))
    assert pause(late, FLOOR, round(1.8 * SAMPLE_RATE)) is None
    assert pause(late, FLOOR, round(1.3 * SAMPLE_RATE)) is not None


def test_the_widest_pause_near_the_end_wins() -> None:
    audio = spoken(("voice", 0.6), ("pause", 0.12), ("voice", 0.1), ("pause", 0.25), ("voice", 0.1))
    assert pause(audio, FLOOR) == pytest.approx(0.945 * SAMPLE_RATE, abs=160)


def test_no_pause_without_a_long_enough_quiet_run_near_the_end() -> None:
    assert pause(spoken(("voice", 1.5)), FLOOR) is None
    # Shorter than a pause (the closure of a stop consonant).
    assert pause(spoken(("voice", 1.0), ("pause", 0.06), ("voice", 0.4)), FLOOR) is None
    # The silence before the wake phrase: ended too long before the detection.
    assert pause(spoken(("pause", 0.5), ("voice", 0.8)), FLOOR) is None
    # Quiet is judged against the floor: in a room as loud as the voice nothing is a pause.
    assert pause(spoken(("voice", 1.0), ("pause", 0.2), ("voice", 0.2)), -25.0) is None
    assert pause(spoken(("pause", 1.5)), FLOOR) is None
    # A voice only 15 dB over a noisy room: its soft sounds would pass for pauses.
    assert pause(spoken(("voice", 1.0), ("pause", 0.2), ("voice", 0.2)), -35.0) is None
    assert pause(spoken(("voice", 1.0), ("pause", 0.2), ("voice", 0.2)), -41.0) is not None


def test_voice_end_finds_the_pause_against_its_own_floor() -> None:
    voice = VoiceEnd(tuning=TUNING)
    audio = spoken(("pause", 5.0), ("voice", 0.8), ("pause", 0.2), ("voice", 0.2))
    for f in split_frames(audio):
        voice.update(f)
    assert voice.floor_dbfs == pytest.approx(FLOOR, abs=1.0)
    preroll = audio[-round(1.5 * SAMPLE_RATE) :]
    assert voice.pause_in(preroll, len(preroll)) == pytest.approx(1.2 * SAMPLE_RATE, abs=160)


def test_a_pause_is_as_long_as_the_tuning_says() -> None:
    audio = spoken(("pause", 0.3), ("voice", 0.8), ("pause", 0.2), ("voice", 0.2))
    longer = UtteranceTuning(pause_min_s=0.3)
    assert pause_in_audio(audio, FLOOR, tuning=longer) is None
    assert pause(audio, FLOOR) is not None


# --- what the recogniser starts with -------------------------------------------------------


def test_the_session_waits_for_the_pause_until_the_tuning_has_passed() -> None:
    wait = round(TUNING.pause_wait_s * SAMPLE_RATE)
    audio = np.zeros(16000 + wait, np.int16)
    assert pause_awaited(audio[:-1], 16000, TUNING)
    assert not pause_awaited(audio, 16000, TUNING)


def test_the_preroll_starts_in_the_pause_after_the_wake_word() -> None:
    audio = np.arange(32000).astype(np.int16)
    preroll = recogniser_preroll(audio, 24000, 20000)
    assert np.array_equal(preroll.audio, audio[20000:])
    assert preroll.detected_s == pytest.approx(0.25)
    assert preroll.wake_end_s == 0.0  # the pre-roll starts after the wake word


def test_without_a_pause_the_whole_preroll_is_decoded_and_the_words_decide() -> None:
    audio = np.arange(32000).astype(np.int16)
    preroll = recogniser_preroll(audio, 24000, None)
    assert np.array_equal(preroll.audio, audio)
    assert preroll.detected_s == 1.5
    assert preroll.wake_end_s is None


def test_without_a_wake_word_all_of_it_is_command() -> None:
    audio = np.arange(8000).astype(np.int16)
    preroll = recogniser_preroll(audio, None, None)
    assert (len(preroll.audio), preroll.detected_s, preroll.wake_end_s) == (8000, 0.5, 0.0)


# --- the wake word's end in Vosk's words ---------------------------------------------------


def said(words: Sequence[TimedWord]) -> list[str]:
    return [w.word for w in words]


def wake_end(
    words: Sequence[TimedWord], detected_s: float, wake_words: frozenset[str] = frozenset()
) -> float:
    return wake_end_in_words(words, detected_s, wake_words, tuning=TUNING)


def timed(*words: tuple[float, float, str]) -> list[TimedWord]:
    return [TimedWord(word, start, end, 1.0) for start, end, word in words]


def test_wake_word_ends_at_the_pause_before_a_late_detection() -> None:
    """Vosk words of "hey jarvis, what time is it"; openWakeWord fired at 2.48 s."""
    words = timed(
        (1.17, 1.38, "the"),
        (1.40, 1.68, "jar"),
        (1.68, 1.82, "of"),
        (1.83, 2.04, "is"),
        (2.16, 2.47, "what"),
        (2.49, 2.85, "time"),
    )
    assert wake_end(words, 2.48) == pytest.approx(2.10)  # "what" is the command's


def test_wake_end_without_a_pause_is_the_detection() -> None:
    words = timed((1.40, 1.68, "jar"), (1.68, 1.82, "of"), (1.83, 2.04, "is"), (2.06, 2.40, "what"))
    assert wake_end(words, 2.48) == 2.48


def test_a_pause_long_before_the_detection_is_not_the_wake_words_end() -> None:
    """ "hey ... jarvis": the pause before "jarvis" is more than word_lookback_s back."""
    words = timed((0.50, 0.80, "hey"), (1.20, 1.90, "jarvis"), (1.90, 2.20, "what"))
    assert 2.30 - TUNING.word_lookback_s > 1.20
    assert wake_end(words, 2.30) == 2.30


def test_an_early_detection_inside_jarvis_never_cuts_before_it() -> None:
    """The pause between "hey" and "jarvis" is in the window, but "jarvis" is still going."""
    words = timed((0.90, 1.20, "hey"), (1.40, 1.95, "jarvis"), (2.00, 2.30, "turn"))
    assert wake_end(words, 1.80, frozenset({"hey", "jarvis"})) == 1.80


def test_a_short_jarvis_after_a_pause_is_still_the_wake_word() -> None:
    words = timed((0.90, 1.20, "hey"), (1.40, 1.70, "jarvis"), (1.80, 2.10, "turn"))
    assert wake_end(words, 1.75, frozenset({"hey", "jarvis"})) == 1.75
    assert wake_end(words, 1.75) == pytest.approx(1.30)  # why the wake words are needed


def test_an_early_detection_does_not_leave_jarvis_in_the_transcript() -> None:
    """The detection came inside "jarvis" (Vosk puts the word after the cut): dropped."""
    heard = timed(
        (0.40, 0.70, "hey"), (0.90, 1.35, "jarvis"), (1.45, 1.70, "turn"), (1.70, 1.85, "on")
    )
    assert said(command_words(heard, 1.0, None, wake_words=WAKE, tuning=TUNING)) == ["turn", "on"]
    kept = command_words(heard, 1.0, None, wake_words=frozenset(), tuning=TUNING)
    assert said(kept) == ["jarvis", "turn", "on"]
    # Times are from the detection, never before it.
    assert [(w.start, w.end) for w in kept] == [(0.0, 0.35), (0.45, 0.7), (0.7, 0.85)]


def test_a_wake_word_right_after_the_detection_is_its_tail() -> None:
    heard = timed((1.60, 2.00, "jarvis"), (2.00, 2.30, "turn"))
    assert said(command_words(heard, 1.55, 0.0, wake_words=WAKE, tuning=TUNING)) == ["turn"]
    # Starting wake_tail_s or more after the detection, it was said in the command.
    later = command_words(heard, 1.0, 0.0, wake_words=WAKE, tuning=TUNING)
    assert said(later) == ["jarvis", "turn"]
    no_tail = UtteranceTuning(wake_tail_s=0.0)
    assert said(command_words(heard, 1.55, 0.0, wake_words=WAKE, tuning=no_tail)) == said(later)
    # Only the first words: the wake phrase's words inside a command stay.
    inside = timed((1.60, 1.90, "turn"), (1.90, 2.00, "on"), (2.00, 2.30, "jarvis"))
    kept = command_words(inside, 1.55, 0.0, wake_words=WAKE, tuning=TUNING)
    assert said(kept) == ["turn", "on", "jarvis"]


def test_a_wake_end_found_in_the_audio_is_where_the_words_are_cut() -> None:
    """The session found the pause (`wake_end_s` 0.0: the pre-roll starts in it): every word
    is the command's, even where the word times show a gap before the detection."""
    heard = timed((0.10, 0.40, "what"), (0.60, 0.80, "time"), (0.80, 0.95, "is"), (0.95, 1.1, "it"))
    assert wake_end(heard, 0.8) == pytest.approx(0.5)  # words alone would cut "what"
    kept = command_words(heard, 0.8, 0.0, wake_words=WAKE, tuning=TUNING)
    assert said(kept) == ["what", "time", "is", "it"]


def test_word_gaps_shorter_than_the_tuning_are_no_pause() -> None:
    heard = timed((1.50, 1.80, "jar"), (1.87, 2.10, "is"))
    assert wake_end(heard, 2.20) == pytest.approx(1.835)
    assert wake_end_in_words(heard, 2.20, tuning=UtteranceTuning(word_gap_min_s=0.08)) == 2.20
