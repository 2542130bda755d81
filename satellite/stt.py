"""Streaming speech-to-text with Vosk, one recogniser per utterance."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from satellite.errors import ModelError
from satellite.frames import SAMPLE_RATE, Frame
from satellite.session import SttUpdate, TimedWord, Transcript

log = logging.getLogger(__name__)


class VoskTranscriber:
    """Feeds one utterance to Vosk and returns partial and final text without the wake word.

    The recogniser also hears the pre-roll (the audio up to and including the frame on which
    the wake word fired), so it decodes the wake word as words instead of mangling its tail
    into the first command word; words centred in the pre-roll are then dropped by time.
    """

    def __init__(self, *, model_path: Path) -> None:
        self._vosk = _import_vosk()
        try:
            self._model = self._vosk.Model(str(model_path))
        except Exception as exc:  # vosk raises a bare Exception when the model does not load
            raise ModelError(f"cannot load Vosk model {model_path}: {exc}") from exc
        self._recognizer: Any = None
        self._skip_s = 0.0

    def start(self, preroll: Frame) -> None:
        """Begin a new utterance; `preroll` ends with the frame that detected the wake word."""
        self._recognizer = self._vosk.KaldiRecognizer(self._model, SAMPLE_RATE)
        self._recognizer.SetWords(True)
        self._recognizer.SetPartialWords(True)
        self._skip_s = len(preroll) / SAMPLE_RATE
        # Whatever Vosk finalises inside the pre-roll is the wake word itself: discard it.
        self._recognizer.AcceptWaveform(preroll.tobytes())

    def feed(self, frame: Frame) -> SttUpdate:
        """Decode one frame; a final when Vosk's endpoint closed an utterance with words."""
        if self._recognizer.AcceptWaveform(frame.tobytes()):
            final = self._transcript(json.loads(self._recognizer.Result()))
            return SttUpdate(partial="", final=final)
        partial = json.loads(self._recognizer.PartialResult())
        return SttUpdate(partial=_text(self._keep(partial.get("partial_result", []))))

    def finish(self) -> Transcript | None:
        """Flush the recogniser and return what it heard, if anything."""
        transcript = self._transcript(json.loads(self._recognizer.FinalResult()))
        self._recognizer = None
        return transcript

    def close(self) -> None:
        """Release the recogniser and model."""
        self._recognizer = None

    def __enter__(self) -> VoskTranscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _keep(self, words: Iterable[Mapping[str, Any]]) -> list[TimedWord]:
        kept = []
        for word in words:
            start, end = float(word["start"]), float(word["end"])
            if (start + end) / 2 >= self._skip_s:
                kept.append(
                    TimedWord(
                        word=str(word["word"]),
                        start=round(max(0.0, start - self._skip_s), 3),
                        end=round(max(0.0, end - self._skip_s), 3),
                        conf=min(1.0, max(0.0, float(word.get("conf", 1.0)))),
                    )
                )
        return kept

    def _transcript(self, result: Mapping[str, Any]) -> Transcript | None:
        words = self._keep(result.get("result", []))
        if not words:
            return None
        confidence = round(sum(w.conf for w in words) / len(words), 4)
        return Transcript(text=_text(words), confidence=confidence, words=tuple(words))


def _text(words: Iterable[TimedWord]) -> str:
    return " ".join(word.word for word in words)


def _import_vosk() -> Any:
    try:
        import vosk
    except ImportError as exc:
        raise ModelError("vosk is not installed: run install.sh") from exc
    vosk.SetLogLevel(-1)
    return vosk
