"""Streaming speech-to-text with Vosk, one recogniser per utterance."""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from satellite.audio.stand_ins import DOWNLOADS, import_with_stand_ins
from satellite.core.frames import SAMPLE_RATE, Frame
from satellite.core.session import Preroll, SttUpdate, TimedWord, Transcript
from satellite.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

# The pause after the wake word: at least this long (two Vosk frames), and ending at most
# this long before the detection (less than "jarvis" lasts, so never the pause before it).
MIN_PAUSE_S = 0.06
PAUSE_LOOKBACK_S = 0.4
# A wake-phrase word starting within this long after the detection is the wake word's tail.
WAKE_TAIL_S = 0.5
# Vosk's word for "speech outside the grammar"; it is never part of a transcript.
UNKNOWN = "[unk]"


class PhraseError(ModelError, ConfigError):
    """`stt.phrases` does not fit the Vosk model: a configuration error (exit 78, no restart)."""


class VoskTranscriber:
    """Feeds one utterance to Vosk and returns partial and final text without the wake word.

    The session starts it in the pause after the wake word when there is one. Otherwise it
    also hears the pre-roll (the audio up to and including the frame on which the wake word
    fired), so it decodes the wake word as words instead of mangling its tail into the first
    command word, and the words before the wake word's end are dropped by time.

    With `phrases` (a command-only room) Vosk decodes only their words and "[unk]", which
    absorbs the wake word in the pre-roll and anything else said; "[unk]" is dropped, and a
    final that is not exactly one of the phrases has empty text (no transcript is published).
    The wake word is deliberately not in the grammar: decoded as words it lets Vosk's endpoint
    close right after it, and the first command word is lost ("set a timer" -> "timer").
    """

    def __init__(
        self, *, model_path: Path, phrases: Sequence[str] = (), wake_words: Iterable[str] = ()
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
        self._recognizer: Any = None
        self._skip_s = 0.0
        self._wake_end_s: float | None = None

    def start(self, preroll: Preroll) -> None:
        """Begin a new utterance with the audio around the wake word.

        Where the wake word ended is `preroll.wake_end_s` when the session found the pause
        after it; otherwise it is found from the words Vosk decodes. Word times are from the
        detection.
        """
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
            return SttUpdate(partial="", final=final)
        partial = json.loads(self._recognizer.PartialResult())
        words = _spoken(self._after_preroll(partial.get("partial_result", [])))
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

    def _after_preroll(self, words: Iterable[Mapping[str, Any]]) -> list[TimedWord]:
        """The words after the wake word, times made relative to the detection."""
        heard = [
            TimedWord(
                word=str(w["word"]),
                start=float(w["start"]),
                end=float(w["end"]),
                conf=min(1.0, max(0.0, float(w.get("conf", 1.0)))),
            )
            for w in words
        ]
        cut = self._wake_end_s
        if cut is None:
            cut = wake_word_end(heard, self._skip_s, self._wake_words)
        skip = self._skip_s
        kept = [
            replace(
                w, start=round(max(0.0, w.start - skip), 3), end=round(max(0.0, w.end - skip), 3)
            )
            for w in heard
            if (w.start + w.end) / 2 >= cut
        ]
        # A detection early in "jarvis" leaves its second half after the cut: words of the
        # wake phrase right at the start are the wake word, not the command.
        while kept and kept[0].word in self._wake_words and kept[0].start < WAKE_TAIL_S:
            kept.pop(0)
        return kept

    def _transcript(self, result: Mapping[str, Any]) -> Transcript | None:
        """None when nothing was said after the wake word; empty text when all was dropped."""
        heard = self._after_preroll(result.get("result", []))
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


def wake_word_end(
    words: Sequence[TimedWord],
    detected_s: float,
    wake_words: frozenset[str] = frozenset(),
) -> float:
    """Where the wake word ended: the widest pause in the last PAUSE_LOOKBACK_S before the
    detection, else the detection itself. Words centred before it are the wake word.

    openWakeWord often fires 0.1-0.4 s after the word ends, by when the first command word
    has begun ("hey jarvis, what time is it" -> "time is it" if cut at the detection). A
    pause only counts when every word between it and the detection ended before the
    detection and none of them is one of `wake_words`: an early detection, still inside
    "jarvis", must not cut at the pause between "hey" and "jarvis".
    """
    best_gap, cut = MIN_PAUSE_S, detected_s
    for i, (before, after) in enumerate(itertools.pairwise(words)):
        gap = after.start - before.end
        if not (detected_s - PAUSE_LOOKBACK_S <= after.start <= detected_s and gap >= best_gap):
            continue
        between = [w for w in words[i + 1 :] if w.start < detected_s]
        if all(w.end <= detected_s and w.word.lower() not in wake_words for w in between):
            best_gap, cut = gap, (after.start + before.end) / 2
    return cut


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
