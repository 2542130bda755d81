"""Vosk streaming on the real model: partials, finals, and the wake word left out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from satellite.errors import ModelError
from satellite.frames import FRAME_SAMPLES, split_frames
from satellite.models import vosk_model_path
from satellite.session import Transcript
from satellite.stt import VoskTranscriber
from tests.support.satellite_proc import models_dir
from tests.support.speech import speak

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def transcriber() -> VoskTranscriber:
    return VoskTranscriber(model_path=vosk_model_path(models_dir()))


def transcribe(
    t: VoskTranscriber, preroll: np.ndarray, rest: np.ndarray
) -> tuple[list[str], Transcript | None]:  # type: ignore[type-arg]
    t.start(preroll)
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


def test_preroll_alone_gives_no_final(transcriber: VoskTranscriber, speech_cache: Path) -> None:
    wake = speak("hey jarvis", cache_dir=speech_cache)
    partials, final = transcribe(transcriber, wake, np.zeros(FRAME_SAMPLES, np.int16))
    assert final is None and partials == []


def test_a_missing_model_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError):
        VoskTranscriber(model_path=tmp_path / "nothing-here")
