"""Vosk streaming on the real model: partials, finals, and the wake word left out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.signals import in_room
from satellite.audio.speech import PAUSE_LOOKBACK_S, VoskTranscriber, wake_word_end
from satellite.config import load_settings
from satellite.core.frames import FRAME_SAMPLES, Frame, split_frames
from satellite.core.session import Final, Preroll, TimedWord, Transcript
from satellite.errors import ConfigError, ModelError
from satellite.modelfiles import vosk_model_path
from satellite.runtime.engines import build_machine
from tests.support.satellite_proc import models_dir, room_config
from tests.support.speech import speak

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def transcriber() -> VoskTranscriber:
    return VoskTranscriber(model_path=vosk_model_path(models_dir()))


def transcribe(
    t: VoskTranscriber, preroll: Frame, rest: Frame, wake_end_s: float | None = None
) -> tuple[list[str], Transcript | None]:
    t.start(Preroll(preroll, len(preroll) / 16000, wake_end_s))
    partials: list[str] = []
    for frame in split_frames(np.concatenate([rest, np.zeros(3 * 16000, np.int16)])):
        update = t.feed(frame)
        if update.partial and (not partials or partials[-1] != update.partial):
            partials.append(update.partial)
        if update.final is not None:
            return partials, update.final
    return partials, t.finish()


def test_command_after_the_preroll_is_transcribed_without_the_wake_word(
    transcriber: VoskTranscriber, speech_cache: Path
) -> None:
    wake = speak("hey jarvis", cache_dir=speech_cache)
    command = speak("turn on the kitchen lights", cache_dir=speech_cache)
    partials, final = transcribe(transcriber, wake, command)
    assert final is not None and final.text == "turn on the kitchen lights"
    assert 0 < final.confidence <= 1
    assert [w.word for w in final.words] == final.text.split()
    assert all(0 <= w.start <= w.end for w in final.words)
    assert partials and all("jarvis" not in p for p in partials)


def test_a_preroll_that_starts_after_the_wake_word_is_all_command(
    transcriber: VoskTranscriber, speech_cache: Path
) -> None:
    """The session found the pause after the wake word and started the pre-roll there: the
    command's first words, said before the detection, are kept."""
    command = speak("turn on the kitchen lights", cache_dir=speech_cache)
    head = round(1.0 * 16000)
    _, final = transcribe(transcriber, command[:head], command[head:], wake_end_s=0.0)
    assert final is not None and final.text == "turn on the kitchen lights"
    # Without it, words centred in the pre-roll count as the wake word.
    _, final = transcribe(transcriber, command[:head], command[head:])
    assert final is not None and not final.text.startswith("turn on")


def test_the_session_starts_vosk_in_the_pause_after_a_spoken_wake_word(
    speech_cache: Path, tmp_path: Path
) -> None:
    """The real detector, voice tracker and recogniser on espeak speech in a quiet room."""
    machine = build_machine(load_settings(room_config(tmp_path / "room.toml", port=1883)))
    started: list[Preroll] = []
    start = machine.transcriber.start

    def record(preroll: Preroll) -> None:
        started.append(preroll)
        start(preroll)

    machine.transcriber.start = record  # type: ignore[method-assign]
    spoken = speak("hey jarvis, turn on the kitchen lights", cache_dir=speech_cache)
    audio = np.concatenate([np.zeros(3 * 16000, np.int16), spoken, np.zeros(3 * 16000, np.int16)])
    events = [e for f in split_frames(in_room(audio, seed=4)) for e in machine.process(f)]
    finals = [e.transcript.text for e in events if isinstance(e, Final)]
    assert finals == ["turn on the kitchen lights"]
    assert len(started) == 1 and started[0].wake_end_s == 0.0  # no wake word decoded
    assert len(started[0].audio) < 0.6 * 16000


def test_preroll_alone_gives_no_final(transcriber: VoskTranscriber, speech_cache: Path) -> None:
    wake = speak("hey jarvis", cache_dir=speech_cache)
    partials, final = transcribe(transcriber, wake, np.zeros(FRAME_SAMPLES, np.int16))
    assert final is None and partials == []


def test_a_missing_model_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError):
        VoskTranscriber(model_path=tmp_path / "nothing-here")


PHRASES = [
    "turn on the kitchen lights",
    "turn off the kitchen lights",
    "set a timer for five minutes",
    "what is the weather today",
    "play some music",
    "stop the music",
]


@pytest.fixture(scope="module")
def phrase_transcriber() -> VoskTranscriber:
    return VoskTranscriber(model_path=vosk_model_path(models_dir()), phrases=PHRASES)


@pytest.mark.parametrize("command", PHRASES)
def test_a_listed_phrase_after_the_wake_word_comes_out_exactly(
    phrase_transcriber: VoskTranscriber, speech_cache: Path, command: str
) -> None:
    wake = speak("hey jarvis", cache_dir=speech_cache)
    partials, final = transcribe(phrase_transcriber, wake, speak(command, cache_dir=speech_cache))
    assert final is not None and final.text == command
    assert [w.word for w in final.words] == command.split()
    assert all("jarvis" not in p and "hey" not in p and "[unk]" not in p for p in partials)


@pytest.mark.parametrize(
    "request_", ["open the garage door", "tell me a joke", "turn on the bedroom lights"]
)
def test_speech_off_the_phrase_list_ends_without_a_transcript(
    phrase_transcriber: VoskTranscriber, speech_cache: Path, request_: str
) -> None:
    wake = speak("hey jarvis", cache_dir=speech_cache)
    partials, final = transcribe(phrase_transcriber, wake, speak(request_, cache_dir=speech_cache))
    # An empty final ends the session as no_speech; so does None from finish().
    assert final is None or final.text == ""
    assert all("[unk]" not in p and "jarvis" not in p for p in partials)


def test_the_wake_word_alone_gives_no_final_with_phrases(
    phrase_transcriber: VoskTranscriber, speech_cache: Path
) -> None:
    wake = speak("hey jarvis", cache_dir=speech_cache)
    partials, final = transcribe(phrase_transcriber, wake, np.zeros(FRAME_SAMPLES, np.int16))
    assert final is None and partials == []


def test_a_phrase_with_words_the_model_does_not_know_is_a_model_error() -> None:
    phrases = ["turn on the kitchen lights", "frobnicate the quux", "quux off"]
    with pytest.raises(ModelError) as info:
        VoskTranscriber(model_path=vosk_model_path(models_dir()), phrases=phrases)
    message = str(info.value)
    assert "\n" not in message
    assert "stt.phrases" in message and "frobnicate, quux (" in message
    assert "kitchen" not in message
    # A configuration mistake: the CLI exits 78, so systemd does not restart into it again.
    assert isinstance(info.value, ConfigError)


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
    assert wake_word_end(words, 2.48) == pytest.approx(2.10)  # "what" is the command's


def test_wake_word_end_without_a_pause_is_the_detection() -> None:
    words = timed((1.40, 1.68, "jar"), (1.68, 1.82, "of"), (1.83, 2.04, "is"), (2.06, 2.40, "what"))
    assert wake_word_end(words, 2.48) == 2.48


def test_a_pause_long_before_the_detection_is_not_the_wake_words_end() -> None:
    """ "hey ... jarvis": the pause before "jarvis" is more than PAUSE_LOOKBACK_S back."""
    words = timed((0.50, 0.80, "hey"), (1.20, 1.90, "jarvis"), (1.90, 2.20, "what"))
    assert 2.30 - PAUSE_LOOKBACK_S > 1.20
    assert wake_word_end(words, 2.30) == 2.30


def test_an_early_detection_inside_jarvis_never_cuts_before_it() -> None:
    """The pause between "hey" and "jarvis" is in the window, but "jarvis" is still going."""
    words = timed((0.90, 1.20, "hey"), (1.40, 1.95, "jarvis"), (2.00, 2.30, "turn"))
    assert wake_word_end(words, 1.80, frozenset({"hey", "jarvis"})) == 1.80


def test_a_short_jarvis_after_a_pause_is_still_the_wake_word() -> None:
    words = timed((0.90, 1.20, "hey"), (1.40, 1.70, "jarvis"), (1.80, 2.10, "turn"))
    assert wake_word_end(words, 1.75, frozenset({"hey", "jarvis"})) == 1.75
    assert wake_word_end(words, 1.75) == pytest.approx(1.30)  # why the wake words are needed


def test_an_early_detection_does_not_leave_jarvis_in_the_transcript() -> None:
    """The detection came inside "jarvis" (Vosk puts the word after the cut): dropped."""
    aware = VoskTranscriber.__new__(VoskTranscriber)  # only the word filter, no model
    aware._skip_s, aware._wake_words, aware._wake_end_s = 1.0, frozenset({"hey", "jarvis"}), None
    words = [
        {"word": "hey", "start": 0.40, "end": 0.70},
        {"word": "jarvis", "start": 0.90, "end": 1.35},
        {"word": "turn", "start": 1.45, "end": 1.70},
        {"word": "on", "start": 1.70, "end": 1.85},
    ]
    assert [w.word for w in aware._after_preroll(words)] == ["turn", "on"]
    aware._wake_words = frozenset()
    assert [w.word for w in aware._after_preroll(words)] == ["jarvis", "turn", "on"]
