"""Vosk streaming on the real model: partials, finals, and the wake word left out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.signals import in_room
from satellite.audio.speech import VoskTranscriber
from satellite.config import load_settings
from satellite.core.frames import FRAME_SAMPLES, Frame, split_frames
from satellite.core.session import Final, Transcript
from satellite.core.utterance import Preroll, UtteranceTuning
from satellite.errors import ConfigError, ModelError
from satellite.modelfiles import vosk_model_path
from satellite.runtime.engines import build_machine
from tests.support.satellite_proc import models_dir, room_config
from tests.support.speech import speak

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def transcriber() -> VoskTranscriber:
    return VoskTranscriber(model_path=vosk_model_path(models_dir()), tuning=UtteranceTuning())


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


def test_the_same_command_decodes_the_same_whatever_was_decoded_before(
    transcriber: VoskTranscriber, speech_cache: Path
) -> None:
    """Kaldi's dither starts from the same seed for every utterance: the same audio gives the
    same words, times and confidences, however many decodes came before it."""
    wake = speak("hey jarvis", cache_dir=speech_cache)
    command = speak("turn on the kitchen lights and set a timer", cache_dir=speech_cache)
    other = speak("what is the weather like tomorrow", cache_dir=speech_cache)
    first = transcribe(transcriber, wake, command)
    for _ in range(2):
        transcribe(transcriber, wake, other)
        assert transcribe(transcriber, wake, command) == first


def test_a_final_closes_the_recogniser_and_its_memory_with_it(
    transcriber: VoskTranscriber, speech_cache: Path
) -> None:
    """Vosk's endpoint ends the utterance: the recogniser goes then, not at the next start."""
    command = speak("stop the music", cache_dir=speech_cache)
    transcriber.start(Preroll(np.zeros(0, np.int16), 0.0, 0.0))
    assert transcriber.decoding
    for frame in split_frames(np.concatenate([command, np.zeros(3 * 16000, np.int16)])):
        final = transcriber.feed(frame).final
        if final is not None:
            break
    assert final is not None and final.text == "stop the music"
    assert not transcriber.decoding


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
        VoskTranscriber(model_path=tmp_path / "nothing-here", tuning=UtteranceTuning())


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
    return VoskTranscriber(
        model_path=vosk_model_path(models_dir()), tuning=UtteranceTuning(), phrases=PHRASES
    )


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
        VoskTranscriber(
            model_path=vosk_model_path(models_dir()), tuning=UtteranceTuning(), phrases=phrases
        )
    message = str(info.value)
    assert "\n" not in message
    assert "stt.phrases" in message and "frobnicate, quux (" in message
    assert "kitchen" not in message
    # A configuration mistake: the CLI exits 78, so systemd does not restart into it again.
    assert isinstance(info.value, ConfigError)
