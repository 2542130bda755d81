"""openWakeWord on the real ONNX models and espeak speech."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from satellite.audio.wake import OwwDetector
from satellite.config import WakeSettings
from satellite.core.frames import Frame, split_frames
from satellite.errors import ModelError
from satellite.modelfiles import feature_model_paths, wake_model_path
from tests.support.satellite_proc import models_dir
from tests.support.speech import speak

pytestmark = pytest.mark.integration

WAKE = WakeSettings()  # the room defaults, where a test has no value of its own


def detector(threshold: float = 0.5, patience: int = WAKE.patience) -> OwwDetector:
    melspec, embedding = feature_model_paths(models_dir())
    return OwwDetector(
        models={"hey_jarvis": wake_model_path(models_dir(), "hey_jarvis")},
        melspec=melspec,
        embedding=embedding,
        threshold=threshold,
        patience=patience,
        noise_suppression=WAKE.noise_suppression,
    )


def detections(det: OwwDetector, samples: Frame) -> list[tuple[int, float]]:
    found = []
    for index, frame in enumerate(split_frames(samples)):
        hit = det.process(frame)
        if hit is not None:
            assert hit.wake_word == "hey_jarvis"
            found.append((index, hit.score))
    return found


def test_wake_word_is_detected_with_its_configured_name_and_score(speech_cache: Path) -> None:
    hits = detections(detector(), speak("hey jarvis", cache_dir=speech_cache))
    assert hits and all(score >= 0.5 for _, score in hits)


def test_other_speech_is_not_detected(speech_cache: Path) -> None:
    assert detections(detector(), speak("turn on the kitchen lights", cache_dir=speech_cache)) == []


def test_threshold_is_respected(speech_cache: Path) -> None:
    assert detections(detector(0.999999), speak("hey jarvis", cache_dir=speech_cache)) == []


def test_reset_forgets_the_wake_word_just_heard(speech_cache: Path) -> None:
    det = detector()
    samples = speak("hey jarvis", cache_dir=speech_cache)
    frames = split_frames(samples)
    first_hit = next(i for i, f in enumerate(frames) if det.process(f) is not None)
    det.reset()
    silence = np.zeros(1280, np.int16)
    assert all(det.process(silence) is None for _ in range(len(frames) - first_hit))


def test_after_a_reset_room_tone_scores_the_same_low_scores_every_time() -> None:
    # openWakeWord's own reset() refills its history with random noise: room tone then
    # scored 0.27-0.36 about a second later, differently each time (a false wake on unmute).
    det = detector()
    tone = np.random.default_rng(5).normal(0.0, 30.0, 32_000).round().astype(np.int16)
    runs = []
    for _ in range(3):
        det.reset()
        scores = []
        for frame in split_frames(tone):
            assert det.process(frame) is None
            scores.append(det.scores["hey_jarvis"])
        runs.append(scores)
    assert runs[0] == runs[1] == runs[2]
    assert max(runs[0]) < 0.05, runs[0]


def test_an_openwakeword_without_the_expected_buffers_is_a_model_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from openwakeword.utils import AudioFeatures

    real_init = AudioFeatures.__init__

    def init(self: AudioFeatures, *args: object, **kwargs: object) -> None:
        real_init(self, *args, **kwargs)
        del self.feature_buffer  # as if another version had renamed it

    monkeypatch.setattr(AudioFeatures, "__init__", init)
    with pytest.raises(ModelError, match="feature_buffer"):
        detector()


def test_the_wake_word_is_detected_right_after_a_reset(speech_cache: Path) -> None:
    det = detector()
    samples = speak("hey jarvis", cache_dir=speech_cache)
    assert detections(det, samples)
    det.reset()
    assert detections(det, samples)


def test_a_frame_of_another_length_is_refused_before_it_reaches_openwakeword() -> None:
    # The shortened raw history holds what one 80 ms frame at a time reads, no more.
    det = detector()
    before = list(det._model.preprocessor.raw_data_buffer)
    with pytest.raises(ValueError, match="1280 samples, not 2560"):
        det.process(np.ones(2560, np.int16))
    assert list(det._model.preprocessor.raw_data_buffer) == before


def test_a_broken_model_file_is_a_model_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a model")
    melspec, embedding = feature_model_paths(models_dir())
    with pytest.raises(ModelError, match=r"broken\.onnx"):
        OwwDetector(
            models={"broken": bad},
            melspec=melspec,
            embedding=embedding,
            threshold=0.5,
            patience=WAKE.patience,
            noise_suppression=WAKE.noise_suppression,
        )


def test_patience_needs_that_many_frames_in_a_row(speech_cache: Path) -> None:
    samples = speak("hey jarvis", cache_dir=speech_cache)
    det = detector()
    scores = []
    for frame in split_frames(samples):
        det.process(frame)
        scores.append(det.scores["hey_jarvis"])
    above = [score >= 0.5 for score in scores]
    first = above.index(True)
    run = next((i for i in range(first, len(above)) if not above[i]), len(above)) - first
    assert run >= 2, scores  # "hey jarvis" holds the score above the threshold for a while
    hits = detections(detector(patience=2), samples)
    assert hits[0][0] == first + 1
    assert detections(detector(patience=run + 1), samples) == []


def test_noise_suppression_runs_speex_before_the_model(speech_cache: Path) -> None:
    melspec, embedding = feature_model_paths(models_dir())
    det = OwwDetector(
        models={"hey_jarvis": wake_model_path(models_dir(), "hey_jarvis")},
        melspec=melspec,
        embedding=embedding,
        threshold=0.5,
        patience=WAKE.patience,
        noise_suppression=True,
    )
    assert det._model.speex_ns is not None  # openWakeWord's own Speex hook is on
    hits = detections(det, speak("hey jarvis", cache_dir=speech_cache))
    assert hits


def test_noise_suppression_without_speex_is_a_clear_model_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "speexdsp_ns", None)  # import now raises ImportError
    melspec, embedding = feature_model_paths(models_dir())
    with pytest.raises(ModelError, match="speexdsp-ns"):
        OwwDetector(
            models={"hey_jarvis": wake_model_path(models_dir(), "hey_jarvis")},
            melspec=melspec,
            embedding=embedding,
            threshold=0.5,
            patience=WAKE.patience,
            noise_suppression=True,
        )
