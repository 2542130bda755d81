"""Where an utterance starts and ends: the pause after the wake word, the wake-word cut, and the
silence after the voice. Pure (numpy and stdlib); every constant is in `UtteranceTuning`.

Two "pause after the wake word" finders, because they see different things at different times:

- `pause_in_audio`, before the recogniser starts: 10 ms windows of audio against the room's noise
  floor. Found, the recogniser starts in the pause and never hears the wake word.
- `wake_end_in_words`, after it decoded the whole pre-roll (no clear pause in the audio: fluent
  speech or a noisy room): the gaps between the words Vosk timed. Its words are cut there.

They cannot be one: the first decides which samples the recogniser hears (it runs on audio, with
no words yet); the second runs on words, which exist only once that audio was decoded, and Vosk
times words to 10 ms frames with gaps much shorter than an energy pause (hence its own minimum and
window). Unifying them would change what the recogniser hears and so the transcripts.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from satellite.core.frames import (
    FULL_SCALE_DB,
    SAMPLE_RATE,
    SILENT_DBFS,
    Frame,
    frames_for,
    power_dbfs,
)

# Voices are measured on this grid of windows (not a tuning: the finders' minimum lengths and
# VoiceEnd's silence are whole windows of it).
WINDOW_S = 0.01
WINDOW_SAMPLES = round(SAMPLE_RATE * WINDOW_S)
# The room's noise floor is the quietest frame of this long: it follows a fan switched on within
# it. The wake gate (satellite.audio.gate) and the voice end judge by the same kind of floor.
FLOOR_WINDOW_S = 5.0


@dataclass(frozen=True)
class UtteranceTuning:
    """The utterance's fixed constants: pause after the wake word, wake-word cut, voice end.

    The lengths a user may change (pre-roll, trailing silence, maximum length, no-speech timeout)
    are settings (`stt` section) and reach the session as `SessionTiming`; these are not.
    """

    # A voice is this far over the floor, dB; above the wake gate's margin so breath and a
    # decaying last syllable do not hold an utterance open. Also what a pause is under.
    voice_margin_db: float = 10.0
    # After a detection the session waits this long, s, for the pause after the wake word before
    # starting the recogniser: openWakeWord often fires inside "jarvis" or as the pause begins.
    pause_wait_s: float = 0.24
    # An audio pause lasts at least this long, s: longer than the closure of a stop consonant.
    pause_min_s: float = 0.1
    # ... and ends at most this long before the detection, s, or after it: openWakeWord fires up
    # to 0.4 s after "jarvis"; less than the wake phrase lasts, so never the pause before it.
    pause_within_s: float = 0.5
    # Audio pauses count only where the voice peaks this far over the floor, dB: in a noisy room
    # soft sounds inside words fall under the voice margin too (on the corpus at 5 dB SNR,
    # trimming there halved the exact transcripts; at 20 dB and over it changed nothing).
    pause_contrast_db: float = 20.0
    # A gap between Vosk's words is a pause from this long, s (two Vosk frames).
    word_gap_min_s: float = 0.06
    # ... when the word after it starts at most this long before the detection, s (less than
    # "jarvis" lasts, so never the gap between "hey" and "jarvis").
    word_lookback_s: float = 0.4
    # A wake-phrase word starting within this long after the detection, s, is the wake word's
    # tail (a detection inside "jarvis"), not the command's first word.
    wake_tail_s: float = 0.5


@dataclass(frozen=True)
class TimedWord:
    """A recognised word, times in seconds from the utterance start."""

    word: str
    start: float
    end: float
    conf: float


@dataclass(frozen=True)
class Preroll:
    """The audio a recogniser starts with, and where the wake word is in it."""

    audio: Frame
    detected_s: float  # where in `audio` the wake word was detected (its frame's end)
    wake_end_s: float | None = None  # where it ended, if a pause showed it; None: find it


def _power(dbfs: float) -> float:
    """The mean power (int16 units squared) of a level in dBFS: `power_dbfs` inverted."""
    return float(10.0 ** ((dbfs + FULL_SCALE_DB) / 10.0))


def window_power(frame: Frame) -> npt.NDArray[np.float64]:
    """The mean power of each 10 ms window of a frame (int16 units squared)."""
    windows = len(frame) // WINDOW_SAMPLES
    blocks = frame[: windows * WINDOW_SAMPLES].astype(np.float64).reshape(windows, -1)
    # ndarray.mean's own arithmetic (a sum, then a division) without its Python wrapper: this
    # runs on every frame, for an idle room too.
    power: npt.NDArray[np.float64] = np.add.reduce(blocks * blocks, axis=1) / WINDOW_SAMPLES
    return power


class NoiseFloor:
    """The quietest frame level of the last FLOOR_WINDOW_S."""

    def __init__(self) -> None:
        self._levels: deque[float] = deque(maxlen=frames_for(FLOOR_WINDOW_S))
        self.dbfs = SILENT_DBFS

    def add(self, level_dbfs: float) -> float:
        """Take one frame's level; the floor now."""
        self._levels.append(level_dbfs)
        self.dbfs = min(self._levels)
        return self.dbfs


class VoiceEnd:
    """Seconds since the voice stopped: since the last 10 ms window `voice_margin_db` over the
    floor.

    The session ends an utterance on it: Vosk names words about a second after they are said,
    too late to time trailing silence by.
    """

    def __init__(self, *, tuning: UtteranceTuning) -> None:
        self.tuning = tuning
        self._floor = NoiseFloor()
        self.silence_s = 0.0

    def update(self, frame: Frame) -> float:
        """Take one frame (every frame, so the floor stays current); the silence now."""
        # One conversion per frame: the frame's level is the mean of its windows' powers.
        power = window_power(frame)
        floor = self._floor.add(power_dbfs(float(np.add.reduce(power)) / len(power)))
        loud = (power >= _power(floor + self.tuning.voice_margin_db)).nonzero()[0]
        if len(loud):
            self.silence_s = (len(frame) // WINDOW_SAMPLES - 1 - int(loud[-1])) * WINDOW_S
        else:
            self.silence_s += len(frame) / SAMPLE_RATE
        return self.silence_s

    @property
    def floor_dbfs(self) -> float:
        """The noise floor voices are judged against."""
        return self._floor.dbfs

    def pause_in(self, audio: Frame, detected_at: int) -> int | None:
        """Where the speaker paused after the wake word, if they did: see `pause_in_audio`.

        `audio` ends with the frame last given to `update`.
        """
        return pause_in_audio(audio, self._floor.dbfs, detected_at, tuning=self.tuning)


def pause_in_audio(
    audio: Frame, floor_dbfs: float, detected_at: int | None = None, *, tuning: UtteranceTuning
) -> int | None:
    """The sample in the middle of the widest pause around a detection, or None: where the
    recogniser starts so that it skips the wake word without cutting into the command.

    A pause is a run of at least `pause_min_s` of 10 ms windows under `voice_margin_db` over the
    floor, after a voice, that ends after `pause_within_s` before the sample `detected_at`
    (default: the end of `audio`) or lasts to the end of `audio`; only where the voice peaks
    `pause_contrast_db` over the floor. Runs on audio, before any word is decoded (see the
    module docstring for why `wake_end_in_words` is a separate finder).
    """
    windows = len(audio) // WINDOW_SAMPLES
    offset = len(audio) - windows * WINDOW_SAMPLES  # whole windows, aligned to the end
    power = window_power(audio[offset:])
    if not windows or power.max() < _power(floor_dbfs + tuning.pause_contrast_db):
        return None
    quiet = power < _power(floor_dbfs + tuning.voice_margin_db)
    detected = windows if detected_at is None else (detected_at - offset) // WINDOW_SAMPLES
    earliest_end = detected - round(tuning.pause_within_s / WINDOW_S)
    best = _widest_quiet_run(quiet.tolist(), round(tuning.pause_min_s / WINDOW_S), earliest_end)
    return None if best is None else offset + best * WINDOW_SAMPLES


def _widest_quiet_run(quiet: list[bool], shortest: int, earliest_end: int) -> int | None:
    """The middle window of the widest (latest on a tie) run of at least `shortest` quiet
    windows that follows a loud one and ends at or after window `earliest_end`."""
    best: tuple[int, int] | None = None  # (length, middle window)
    run_start = None
    for i, is_quiet in enumerate([*quiet, False]):
        if is_quiet and run_start is None:
            run_start = i
        elif not is_quiet and run_start is not None:
            length = i - run_start
            after_voice = run_start > 0  # the wake word was heard as a voice before it
            wide = length >= shortest and (best is None or length >= best[0])
            if after_voice and wide and i >= earliest_end:
                best = (length, run_start + length // 2)
            run_start = None
    return None if best is None else best[1]


def pause_awaited(pending: Frame, detected_at: int, tuning: UtteranceTuning) -> bool:
    """Whether the session still waits for the pause after the wake word: less than
    `pause_wait_s` of `pending` (the audio held back for the recogniser) follows the detection."""
    return len(pending) - detected_at < round(tuning.pause_wait_s * SAMPLE_RATE)


def recogniser_preroll(pending: Frame, detected_at: int | None, pause: int | None) -> Preroll:
    """What the recogniser starts with, from the audio held back for it.

    Opened without the wake word (`detected_at` None), all of it is command. Starting in the
    `pause` after the wake word, the recogniser never decodes the wake word (Vosk spends ~0.2 s
    of CPU per second of speech) and the command starts clean. Without one (fluent speech, a
    noisy room) it decodes all of `pending` and the wake word is cut by the words' times
    (`command_words`).
    """
    if detected_at is None:
        return Preroll(pending, len(pending) / SAMPLE_RATE, 0.0)
    if pause is None:
        return Preroll(pending, detected_at / SAMPLE_RATE)
    return Preroll(pending[pause:], (detected_at - pause) / SAMPLE_RATE, 0.0)


def wake_end_in_words(
    words: Sequence[TimedWord],
    detected_s: float,
    wake_words: frozenset[str] = frozenset(),
    *,
    tuning: UtteranceTuning,
) -> float:
    """Where the wake word ended: the widest gap between words in the last `word_lookback_s`
    before the detection, else the detection itself. Words centred before it are the wake word.

    openWakeWord often fires 0.1-0.4 s after the word ends, by when the first command word
    has begun ("hey jarvis, what time is it" -> "time is it" if cut at the detection). A
    gap only counts when every word between it and the detection ended before the
    detection and none of them is one of `wake_words`: an early detection, still inside
    "jarvis", must not cut at the gap between "hey" and "jarvis". Runs on Vosk's words, once
    the pre-roll was decoded because `pause_in_audio` found no pause.
    """
    best_gap, cut = tuning.word_gap_min_s, detected_s
    for i, (before, after) in enumerate(itertools.pairwise(words)):
        gap = after.start - before.end
        in_window = detected_s - tuning.word_lookback_s <= after.start <= detected_s
        if not (in_window and gap >= best_gap):
            continue
        between = [w for w in words[i + 1 :] if w.start < detected_s]
        if all(w.end <= detected_s and w.word.lower() not in wake_words for w in between):
            best_gap, cut = gap, (after.start + before.end) / 2
    return cut


def command_words(
    heard: Sequence[TimedWord],
    detected_s: float,
    wake_end_s: float | None,
    *,
    wake_words: frozenset[str],
    tuning: UtteranceTuning,
) -> list[TimedWord]:
    """The words of `heard` (times from the recogniser's start) after the wake word, times made
    relative to the detection.

    The wake word ends at `wake_end_s` when the session found the pause after it, else where
    `wake_end_in_words` says; `wake_words` are the wake phrase's own words, lowercase.
    """
    cut = wake_end_s
    if cut is None:
        cut = wake_end_in_words(heard, detected_s, wake_words, tuning=tuning)
    kept = [_from_detection(w, detected_s) for w in heard if (w.start + w.end) / 2 >= cut]
    # A detection early in "jarvis" leaves its second half after the cut: words of the
    # wake phrase right at the start are the wake word, not the command.
    while kept and kept[0].word in wake_words and kept[0].start < tuning.wake_tail_s:
        kept.pop(0)
    return kept


def _from_detection(word: TimedWord, detected_s: float) -> TimedWord:
    start, end = max(0.0, word.start - detected_s), max(0.0, word.end - detected_s)
    return replace(word, start=round(start, 3), end=round(end, 3))
