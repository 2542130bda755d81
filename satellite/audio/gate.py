"""The silence gate: openWakeWord sleeps through an empty room and misses nothing when it wakes.

`EnergyGate` judges each 80 ms frame against the room's noise floor, the quietest frame of the
last few seconds, so it follows a fan switched on (after FLOOR_WINDOW_S) and needs no
per-microphone calibration. `GatedDetector` keeps the frames the gate held back and, when the
gate opens, feeds the wake detector the last REPLAY_S of them before the frame that opened it:
openWakeWord's features look back about two seconds, so it scores the opening frames exactly
as if it had heard everything. `VoiceEnd` uses the same kind of floor to time the silence
after a voice, which ends an utterance.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

import numpy as np
import numpy.typing as npt

from satellite.core.frames import (
    FULL_SCALE_DB,
    SAMPLE_RATE,
    SILENT_DBFS,
    Frame,
    frames_for,
    power_dbfs,
    rms_dbfs,
)
from satellite.core.session import Detection

FLOOR_WINDOW_S = 5.0
# openWakeWord: 16 embeddings 80 ms apart, each over 76 mel frames (0.76 s) -> 1.96 s of
# audio, plus the melspectrogram's own context. A little more costs nothing on silence.
REPLAY_S = 2.24
WINDOW_S = 0.01
WINDOW_SAMPLES = round(SAMPLE_RATE * WINDOW_S)
# A voice is this far over the floor; above the gate's margin so breath and a decaying
# last syllable do not hold an utterance open.
VOICE_MARGIN_DB = 10.0
# The pause after the wake word: at least this long (longer than the closure of a stop
# consonant), and ending at most PAUSE_WITHIN_S before the detection or after it
# (openWakeWord fires up to 0.4 s after "jarvis"; less than the wake phrase lasts).
PAUSE_MIN_S = 0.1
PAUSE_WITHIN_S = 0.5
# Only where the voice stands this far over the floor: in a noisy room soft sounds inside
# words fall under the voice margin too (on the corpus at 5 dB SNR, trimming there halved the
# exact transcripts; at 20 dB and over it changed nothing).
PAUSE_CONTRAST_DB = 20.0


def _power(dbfs: float) -> float:
    """The mean power (int16 units squared) of a level in dBFS: `power_dbfs` inverted."""
    return float(10.0 ** ((dbfs + FULL_SCALE_DB) / 10.0))


def window_power(frame: Frame) -> npt.NDArray[np.float64]:
    """The mean power of each 10 ms window of a frame (int16 units squared)."""
    windows = len(frame) // WINDOW_SAMPLES
    blocks = frame[: windows * WINDOW_SAMPLES].astype(np.float64).reshape(windows, -1)
    power: npt.NDArray[np.float64] = (blocks * blocks).mean(axis=1)
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


class EnergyGate:
    """Open while frames are `margin_db` above the noise floor, and `hangover_s` after."""

    def __init__(self, *, margin_db: float, hangover_s: float) -> None:
        self.margin_db = margin_db
        self._hangover_frames = frames_for(hangover_s)
        self._floor = NoiseFloor()
        self._hangover_left = 0
        self.open = False

    @property
    def floor_dbfs(self) -> float:
        """The noise floor the gate judges by."""
        return self._floor.dbfs

    def update(self, frame: Frame) -> bool:
        """Judge one frame; whether the gate is open for it."""
        level = rms_dbfs(frame)
        if level >= self._floor.add(level) + self.margin_db:
            self._hangover_left = self._hangover_frames
            self.open = True
        elif self._hangover_left > 0:
            self._hangover_left -= 1
            self.open = True
        else:
            self.open = False
        return self.open


class VoiceEnd:
    """Seconds since the voice stopped: since the last 10 ms window `margin_db` over the floor.

    The session ends an utterance on it: Vosk names words about a second after they are said,
    too late to time trailing silence by.
    """

    def __init__(self, *, margin_db: float = VOICE_MARGIN_DB) -> None:
        self.margin_db = margin_db
        self._floor = NoiseFloor()
        self.silence_s = 0.0

    def update(self, frame: Frame) -> float:
        """Take one frame (every frame, so the floor stays current); the silence now."""
        # One conversion per frame: the frame's level is the mean of its windows' powers.
        power = window_power(frame)
        floor = self._floor.add(power_dbfs(float(power.mean())))
        loud = np.flatnonzero(power >= _power(floor + self.margin_db))
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
        """Where the speaker paused after the wake word, if they did: see `last_pause`.

        `audio` ends with the frame last given to `update`.
        """
        return last_pause(audio, self._floor.dbfs, detected_at, margin_db=self.margin_db)


def last_pause(
    audio: Frame,
    floor_dbfs: float,
    detected_at: int | None = None,
    *,
    margin_db: float = VOICE_MARGIN_DB,
    min_s: float = PAUSE_MIN_S,
    within_s: float = PAUSE_WITHIN_S,
) -> int | None:
    """The sample in the middle of the widest pause around a detection, or None.

    A pause is a run of at least `min_s` of 10 ms windows under `margin_db` over the floor,
    after a voice, that ends after `within_s` before the sample `detected_at` (default: the
    end of `audio`) or lasts to the end of `audio`; only where the voice peaks
    PAUSE_CONTRAST_DB over the floor. Starting the recogniser there skips the wake word
    without cutting into the command.
    """
    windows = len(audio) // WINDOW_SAMPLES
    offset = len(audio) - windows * WINDOW_SAMPLES  # whole windows, aligned to the end
    power = window_power(audio[offset:])
    if not windows or power.max() < _power(floor_dbfs + PAUSE_CONTRAST_DB):
        return None
    quiet = power < _power(floor_dbfs + margin_db)
    shortest = round(min_s / WINDOW_S)
    detected = windows if detected_at is None else (detected_at - offset) // WINDOW_SAMPLES
    earliest_end = detected - round(within_s / WINDOW_S)
    best: tuple[int, int] | None = None  # (length, middle window)
    run_start = None
    for i, is_quiet in enumerate([*quiet.tolist(), False]):
        if is_quiet and run_start is None:
            run_start = i
        elif not is_quiet and run_start is not None:
            length = i - run_start
            after_voice = run_start > 0  # the wake word was heard as a voice before it
            wide = length >= shortest and (best is None or length >= best[0])
            if after_voice and wide and i >= earliest_end:
                best = (length, run_start + length // 2)
            run_start = None
    return None if best is None else offset + best[1] * WINDOW_SAMPLES


class ScoringDetector(Protocol):
    """A wake detector that shows its last scores (satellite.audio.wake.OwwDetector)."""

    threshold: float
    scores: dict[str, float]

    def process(self, frame: Frame) -> Detection | None: ...

    def reset(self) -> None: ...


class GatedDetector:
    """A wake detector that only runs while the gate is open, replaying what it skipped."""

    def __init__(self, detector: ScoringDetector, gate: EnergyGate) -> None:
        self.detector = detector
        self.gate = gate
        self._skipped: deque[Frame] = deque(maxlen=frames_for(REPLAY_S))
        self.frames_scored = 0

    @property
    def threshold(self) -> float:
        """The wrapped detector's threshold."""
        return self.detector.threshold

    @property
    def scores(self) -> dict[str, float]:
        """The wrapped detector's scores for the last frame it scored."""
        return self.detector.scores

    def process(self, frame: Frame) -> Detection | None:
        """Hold the frame back while the gate is closed; else replay the held frames, then it."""
        if not self.gate.update(frame):
            self._skipped.append(frame)
            return None
        detection = None
        while self._skipped:
            detection = self._score(self._skipped.popleft()) or detection
        return self._score(frame) or detection

    def reset(self) -> None:
        """Reset the detector and forget held frames; the noise floor is kept."""
        self.detector.reset()
        self._skipped.clear()

    def _score(self, frame: Frame) -> Detection | None:
        self.frames_scored += 1
        return self.detector.process(frame)
