"""Wake-word detection with openWakeWord's ONNX models."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from satellite.audio.oww import model_class, no_warm_up, short_raw_history
from satellite.core.frames import FRAME_SAMPLES, SAMPLE_RATE, Frame, split_frames
from satellite.core.session import Detection
from satellite.errors import ModelError

log = logging.getLogger(__name__)

# openWakeWord's reset() refills its feature history from unseeded random noise: plain room
# tone then scored up to 0.36 about a second later, differently each time (a false wake after
# unmuting), and embedding that noise raised peak RSS by 35 MB. The detector instead restores
# the state it had after hearing this long of a quiet room (longer than the ~2 s its features
# look back), the same every time. The buffers are openwakeword 0.6.0's (pinned).
QUIET_S = 3.0
QUIET_STD = 30.0  # the room tone's standard deviation (int16 units): a quiet room
# Observes the scores of every frame a detector scores, by wake word, on the thread that runs
# it: how `satellite listen` shows them, without reaching into the session machine.
ScoreTap = Callable[[Mapping[str, float]], None]

_STREAM_STATE = (
    "raw_data_buffer",
    "melspectrogram_buffer",
    "accumulated_samples",
    "raw_data_remainder",
    "feature_buffer",
)


class OwwDetector:
    """Scores each 80 ms frame with every configured wake model; reports threshold crossings.

    A model detects when its score is at or above `threshold` on `patience` frames in a row.
    `on_scores` taps the scores of each frame scored.
    """

    def __init__(
        self,
        *,
        models: Mapping[str, Path],
        melspec: Path,
        embedding: Path,
        threshold: float,
        patience: int,
        noise_suppression: bool,
        on_scores: ScoreTap | None = None,
    ) -> None:
        """`models` maps the configured name (reported as `wake_word`) to its .onnx file."""
        self.threshold = threshold
        self.patience = patience
        self._on_scores = on_scores
        self._names = {path.stem: name for name, path in models.items()}
        self._model = _load(list(models.values()), melspec, embedding, noise_suppression)
        self._quiet = _quiet_state(self._model)
        self.scores: dict[str, float] = dict.fromkeys(models, 0.0)
        self._above: dict[str, int] = dict.fromkeys(models, 0)
        self.reset()

    def process(self, frame: Frame) -> Detection | None:
        """Score one frame; a Detection for the best model at or above the threshold."""
        if len(frame) != FRAME_SAMPLES:  # openWakeWord's raw history holds one frame's reads
            raise ValueError(f"a frame is {FRAME_SAMPLES} samples, not {len(frame)}")
        raw: Mapping[str, Any] = self._model.predict(frame)
        self.scores = {self._names.get(key, key): float(value) for key, value in raw.items()}
        if self._on_scores is not None:
            self._on_scores(self.scores)
        best: Detection | None = None
        for name, score in self.scores.items():
            above = self._above.get(name, 0) + 1 if score >= self.threshold else 0
            self._above[name] = above
            if above >= self.patience and (best is None or score > best.score):
                best = Detection(name, score)
        return best

    def reset(self) -> None:
        """Forget buffered audio and scores, so the wake word just heard cannot fire again.

        The detector is left as if it had heard QUIET_S of a quiet room (not openWakeWord's
        own reset(), see QUIET_S).
        """
        self._model.prediction_buffer.clear()
        features = self._model.preprocessor
        for name, value in self._quiet.items():
            setattr(features, name, _copy(value))
        self._above = dict.fromkeys(self._above, 0)
        self.scores = dict.fromkeys(self.scores, 0.0)

    def close(self) -> None:
        """Nothing to release beyond memory; here for the boundary's uniform shape."""

    def __enter__(self) -> OwwDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _quiet_state(model: Any) -> dict[str, Any]:
    """openWakeWord's streaming buffers after QUIET_S of seeded room tone."""
    missing = [name for name in _STREAM_STATE if not hasattr(model.preprocessor, name)]
    if missing:
        raise ModelError(
            f"openwakeword has no {', '.join(missing)}: install the pinned version "
            "(`pip install --no-deps openwakeword==0.6.0`)"
        )
    rng = np.random.default_rng(0)
    tone = np.round(rng.normal(0.0, QUIET_STD, round(QUIET_S * SAMPLE_RATE))).astype(np.int16)
    for frame in split_frames(tone):
        model.predict(frame)
    return {name: _copy(getattr(model.preprocessor, name)) for name in _STREAM_STATE}


def _copy(value: Any) -> Any:
    if isinstance(value, deque):
        return deque(value, maxlen=value.maxlen)
    if isinstance(value, np.ndarray):
        return value.copy()
    return value


def _load(paths: list[Path], melspec: Path, embedding: Path, noise_suppression: bool) -> Any:
    try:
        Model = model_class()  # noqa: N806 (a class)
    except ImportError as exc:
        raise ModelError(
            "openwakeword is not installed: run install.sh "
            "(or `pip install --no-deps openwakeword==0.6.0`)"
        ) from exc
    if noise_suppression:
        try:
            import speexdsp_ns  # noqa: F401
        except ImportError as exc:
            raise ModelError(
                "wake.noise_suppression needs the speexdsp-ns package, which PyPI has as a "
                "wheel for Python 3.11/3.12 on x86_64 and aarch64 only: "
                "`pip install speexdsp-ns==0.1.2` in the satellite's venv, or set it to false"
            ) from exc
    try:
        with no_warm_up():
            model = Model(
                wakeword_models=[str(path) for path in paths],
                inference_framework="onnx",
                melspec_model_path=str(melspec),
                embedding_model_path=str(embedding),
                enable_speex_noise_suppression=noise_suppression,
            )
        short_raw_history(model)
    except Exception as exc:  # onnxruntime and openwakeword raise a variety of types
        raise ModelError(f"cannot load wake models {[p.name for p in paths]}: {exc}") from exc
    return model
