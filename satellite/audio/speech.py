"""Streaming speech-to-text with Vosk, one recogniser per utterance."""

from __future__ import annotations

import ctypes
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from satellite.audio.stand_ins import DOWNLOADS, import_with_stand_ins
from satellite.core.frames import SAMPLE_RATE, Frame
from satellite.core.session import SttUpdate, Transcript
from satellite.core.utterance import Preroll, TimedWord, UtteranceTuning, command_words
from satellite.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

# Vosk's word for "speech outside the grammar"; it is never part of a transcript.
UNKNOWN = "[unk]"
# Where Kaldi's dither starts for every utterance: 1 is the C library's own initial state, so
# each utterance decodes as the first one of a fresh process always did.
DITHER_SEED = 1


class PhraseError(ModelError, ConfigError):
    """`stt.phrases` does not fit the Vosk model: a configuration error (exit 78, no restart)."""


class VoskTranscriber:
    """Feeds one utterance to Vosk and returns partial and final text without the wake word.

    The session starts it in the pause after the wake word when there is one. Otherwise it
    also hears the pre-roll (the audio up to and including the frame on which the wake word
    fired), so it decodes the wake word as words instead of mangling its tail into the first
    command word, and the words before the wake word's end are dropped by time (the rules are
    in satellite.core.utterance).

    With `phrases` (a command-only room) Vosk decodes only their words and "[unk]", which
    absorbs the wake word in the pre-roll and anything else said; "[unk]" is dropped, and a
    final that is not exactly one of the phrases has empty text (no transcript is published).
    The wake word is deliberately not in the grammar: decoded as words it lets Vosk's endpoint
    close right after it, and the first command word is lost ("set a timer" -> "timer").
    """

    def __init__(
        self,
        *,
        model_path: Path,
        tuning: UtteranceTuning,
        phrases: Sequence[str] = (),
        wake_words: Iterable[str] = (),
    ) -> None:
        """`phrases`: lowercase, single-spaced (as SttSettings makes them); empty = dictation."""
        self._vosk = _import_vosk()
        try:
            self._model = self._vosk.Model(str(model_path))
        except Exception as exc:  # vosk raises a bare Exception when the model does not load
            raise ModelError(f"cannot load Vosk model {model_path}: {exc}") from exc
        self._grammar: str | None = None
        self._phrases = frozenset(phrases)
        # The wake phrase's own words ("hey", "jarvis"): a cut never keeps them.
        self._wake_words = frozenset(word.lower() for word in wake_words)
        if phrases:
            self._grammar = self._grammar_for(model_path, list(dict.fromkeys(phrases)))
        self._tuning = tuning
        self._recognizer: Any = None
        self._skip_s = 0.0
        self._wake_end_s: float | None = None

    @property
    def decoding(self) -> bool:
        """Whether an utterance's recogniser is open: from `start` to its final or `finish`."""
        return self._recognizer is not None

    def start(self, preroll: Preroll) -> None:
        """Begin a new utterance with the audio around the wake word.

        Where the wake word ended is `preroll.wake_end_s` when the session found the pause
        after it; otherwise it is found from the words Vosk decodes. Word times are from the
        detection.
        """
        seed_dither()
        if self._grammar is None:
            self._recognizer = self._vosk.KaldiRecognizer(self._model, SAMPLE_RATE)
        else:
            self._recognizer = self._vosk.KaldiRecognizer(self._model, SAMPLE_RATE, self._grammar)
        self._recognizer.SetWords(True)
        self._recognizer.SetPartialWords(True)
        self._skip_s = preroll.detected_s
        self._wake_end_s = preroll.wake_end_s
        # What Vosk finalises inside the pre-roll is dropped by time like any other word.
        self._recognizer.AcceptWaveform(preroll.audio.tobytes())

    def feed(self, frame: Frame) -> SttUpdate:
        """Decode one frame; a final when Vosk's endpoint closed an utterance with words.

        The final's text is empty when every word after the pre-roll was outside the phrases.
        """
        if self._recognizer.AcceptWaveform(frame.tobytes()):
            final = self._transcript(json.loads(self._recognizer.Result()))
            if final is not None:  # the utterance is over: its decoder's memory goes now
                self._recognizer = None
            return SttUpdate(partial="", final=final)
        partial = json.loads(self._recognizer.PartialResult())
        words = _spoken(self._command_words(partial.get("partial_result", [])))
        return SttUpdate(partial=_text(words))

    def finish(self) -> Transcript | None:
        """Flush the recogniser and return what it heard, if anything."""
        transcript = self._transcript(json.loads(self._recognizer.FinalResult()))
        self._recognizer = None
        return transcript if transcript is not None and transcript.text else None

    def close(self) -> None:
        """Release the recogniser and model."""
        self._recognizer = None

    def __enter__(self) -> VoskTranscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _grammar_for(self, model_path: Path, phrases: list[str]) -> str:
        if not any((model_path / folder / "HCLr.fst").is_file() for folder in ("graph", ".")):
            raise PhraseError(
                f"stt.phrases: the Vosk model {model_path.name} has a static graph and "
                "cannot be limited to phrases; use a small or -lgraph model"
            )
        missing = [w for w in dict.fromkeys(" ".join(phrases).split()) if not self._knows(w)]
        if missing:
            raise PhraseError(
                f"stt.phrases: words not in the vocabulary of {model_path.name}: "
                f"{', '.join(missing)} (write numbers as words; use words the model knows)"
            )
        log.info("Vosk limited to %d phrases", len(phrases))
        return json.dumps([*phrases, UNKNOWN])

    def _knows(self, word: str) -> bool:
        return bool(self._model.vosk_model_find_word(word) >= 0)

    def _command_words(self, words: Iterable[Mapping[str, Any]]) -> list[TimedWord]:
        """The words after the wake word, times made relative to the detection."""
        heard = [_timed_word(w) for w in words]
        return command_words(
            heard,
            self._skip_s,
            self._wake_end_s,
            wake_words=self._wake_words,
            tuning=self._tuning,
        )

    def _transcript(self, result: Mapping[str, Any]) -> Transcript | None:
        """None when nothing was said after the wake word; empty text when all was dropped."""
        heard = self._command_words(result.get("result", []))
        if not heard:
            return None
        words = _spoken(heard)
        # Vosk turns the phrases into a bigram model, so it can also decode other sequences of
        # their words ("turn on the bedroom lights" -> "turn on the lights"): only a listed
        # phrase is a command.
        if not words or (self._phrases and _text(words) not in self._phrases):
            return Transcript(text="", confidence=0.0)
        confidence = round(sum(w.conf for w in words) / len(words), 4)
        return Transcript(text=_text(words), confidence=confidence, words=tuple(words))


def _timed_word(word: Mapping[str, Any]) -> TimedWord:
    """One word of a Vosk result (its confidence clamped to 0..1)."""
    return TimedWord(
        word=str(word["word"]),
        start=float(word["start"]),
        end=float(word["end"]),
        conf=min(1.0, max(0.0, float(word.get("conf", 1.0)))),
    )


def _text(words: Iterable[TimedWord]) -> str:
    return " ".join(word.word for word in words)


def _spoken(words: list[TimedWord]) -> list[TimedWord]:
    return [word for word in words if word.word != UNKNOWN]


def _import_vosk() -> Any:
    try:
        vosk = import_with_stand_ins("vosk", DOWNLOADS)  # a model path, never a download
    except ImportError as exc:
        raise ModelError("vosk is not installed: run install.sh") from exc
    vosk.SetLogLevel(-1)
    return vosk


def seed_dither() -> None:
    """Start Kaldi's dither where it starts in a fresh process, so that the same audio always
    decodes to the same words (call before each recogniser, on the thread that decodes).

    Vosk's models leave Kaldi's MFCC dither at its default: noise of one sample's amplitude on
    every frame, drawn from the C library's global rand(). Unseeded, each utterance continues
    where the last one left off, and the same command decoded twice in one process could come
    out as different words ("stop the music", "stop them music") or confidences.
    """
    ctypes.CDLL(None).srand(DITHER_SEED)
