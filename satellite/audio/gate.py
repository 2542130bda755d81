"""The silence gate: openWakeWord sleeps through an empty room and misses nothing when it wakes.

`EnergyGate` judges each 80 ms frame against the room's noise floor, the quietest frame of the
last few seconds, so it follows a fan switched on (after FLOOR_WINDOW_S) and needs no
per-microphone calibration. `GatedDetector` keeps the frames the gate held back and, when the
gate opens, feeds the wake detector the last REPLAY_S of them before the frame that opened it:
openWakeWord's features look back about two seconds, so it scores the opening frames exactly
as if it had heard everything. The floor is the one the utterance's end is timed against
(satellite.core.utterance.NoiseFloor).
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from satellite.core.frames import Frame, frames_for, rms_dbfs
from satellite.core.session import Detection
from satellite.core.utterance import NoiseFloor

# openWakeWord: 16 embeddings 80 ms apart, each over 76 mel frames (0.76 s) -> 1.96 s of
# audio, plus the melspectrogram's own context. A little more costs nothing on silence.
REPLAY_S = 2.24


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

    def hold_open(self) -> None:
        """Stay open for the hangover from the next frame whatever its level: a gate that has
        not heard the room yet would take a voice for the room's floor and close on it."""
        self._hangover_left = self._hangover_frames
        self.open = True

    def retune(self, *, margin_db: float, hangover_s: float) -> None:
        """New margin and hangover from the next frame on; the floor heard so far is kept."""
        self.margin_db = margin_db
        self._hangover_frames = frames_for(hangover_s)
        self._hangover_left = min(self._hangover_left, self._hangover_frames)

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

    def unwrap(self) -> ScoringDetector:
        """The wrapped detector, without the gate from now on: it first scores the frames held
        back, so its history has no gap (they were below the gate: no wake word in them)."""
        while self._skipped:
            self._score(self._skipped.popleft())
        return self.detector

    def _score(self, frame: Frame) -> Detection | None:
        self.frames_scored += 1
        return self.detector.process(frame)
