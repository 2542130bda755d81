"""The silence gate: closed on room tone, open on sound, and nothing lost when it opens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.signals import room_tone
from satellite.audio.gate import REPLAY_S, EnergyGate, GatedDetector
from satellite.audio.wake import OwwDetector
from satellite.config import WakeSettings
from satellite.core.frames import (
    FRAME_S,
    SAMPLE_RATE,
    SILENT_DBFS,
    Frame,
    frames_for,
    rms_dbfs,
    split_frames,
)
from satellite.core.session import Detection
from satellite.core.utterance import FLOOR_WINDOW_S
from satellite.modelfiles import feature_model_paths, wake_model_path
from tests.support.satellite_proc import models_dir
from tests.support.speech import speak


def tone(level_dbfs: float, frames: int = 1) -> list[Frame]:
    """Frames of a 440 Hz sine at an RMS of `level_dbfs`."""
    amplitude = 32768.0 * 10 ** (level_dbfs / 20) * np.sqrt(2)
    t = np.arange(frames * 1280) / SAMPLE_RATE
    return split_frames(np.round(amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.int16))


def gate(margin_db: float = 6.0, hangover_s: float = 0.4) -> EnergyGate:
    return EnergyGate(margin_db=margin_db, hangover_s=hangover_s)


def test_rms_dbfs_of_known_signals() -> None:
    assert rms_dbfs(np.zeros(1280, np.int16)) == SILENT_DBFS
    assert rms_dbfs(np.full(1280, 32767, np.int16)) == pytest.approx(0.0, abs=0.01)
    assert rms_dbfs(tone(-30.0)[0]) == pytest.approx(-30.0, abs=0.1)


def test_gate_stays_closed_on_room_tone() -> None:
    g = gate()
    assert not any(g.update(frame) for frame in split_frames(room_tone(20.0)))
    assert g.floor_dbfs == pytest.approx(-60.7, abs=0.5)


def test_gate_opens_on_sound_and_closes_after_the_hangover() -> None:
    g = gate(margin_db=6.0, hangover_s=0.4)
    for frame in tone(-50.0, 10):
        g.update(frame)
    assert not g.update(tone(-45.0)[0])  # 5 dB above the floor: not enough
    assert g.update(tone(-43.0)[0])  # 7 dB above
    held = [g.update(frame) for frame in tone(-50.0, 8)]
    assert held == [True] * frames_for(0.4) + [False] * (8 - frames_for(0.4))


def test_a_retuned_gate_keeps_the_floor_it_heard() -> None:
    g = gate(margin_db=6.0, hangover_s=0.4)
    for frame in tone(-50.0, 10):
        g.update(frame)
    g.retune(margin_db=4.0, hangover_s=0.2)
    assert g.floor_dbfs == pytest.approx(-50.0, abs=0.1)
    assert g.update(tone(-45.0)[0])  # 5 dB above: enough now
    held = [g.update(frame) for frame in tone(-50.0, 6)]
    assert held == [True] * frames_for(0.2) + [False] * (6 - frames_for(0.2))


def test_a_gate_held_open_scores_a_voice_it_would_take_for_the_floor() -> None:
    """A gate created while someone speaks (a reload turning it on) stays open its hangover."""
    new = gate(hangover_s=0.4)
    assert not new.update(tone(-30.0)[0])  # its first frame is its floor
    held = gate(hangover_s=0.4)
    held.hold_open()
    opened = [held.update(frame) for frame in tone(-30.0, 8)]
    assert opened == [True] * frames_for(0.4) + [False] * (8 - frames_for(0.4))


def test_floor_follows_a_louder_room_after_its_window() -> None:
    g = gate()
    for frame in tone(-60.0, 20):
        g.update(frame)
    louder = [g.update(frame) for frame in tone(-40.0, frames_for(FLOOR_WINDOW_S) + 10)]
    assert louder[0] and not louder[-1]  # a fan switched on: open at first, then the new floor
    assert g.floor_dbfs == pytest.approx(-40.0, abs=0.1)


class Recorder:
    """A detector that remembers what it was fed and fires on a marked frame."""

    threshold = 0.5

    def __init__(self) -> None:
        self.fed: list[int] = []
        self.scores: dict[str, float] = {"w": 0.0}
        self.resets = 0

    def process(self, frame: Frame) -> Detection | None:
        self.fed.append(int(frame[0]))
        return Detection("w", 0.9) if frame[0] == 7 else None

    def reset(self) -> None:
        self.resets += 1


def marked(value: int, level_dbfs: float) -> Frame:
    frame = tone(level_dbfs)[0]
    frame[0] = value
    return frame


def test_opening_replays_the_skipped_frames_in_order_then_the_loud_one() -> None:
    inner = Recorder()
    gated = GatedDetector(inner, gate())
    for i in range(100, 110):
        assert gated.process(marked(i, -60.0)) is None
    assert inner.fed == []
    gated.process(marked(1, -30.0))
    assert inner.fed == [*range(100, 110), 1]


def test_replay_is_bounded_to_the_feature_window() -> None:
    inner = Recorder()
    gated = GatedDetector(inner, gate())
    for i in range(1000, 1100):
        gated.process(marked(i, -60.0))
    gated.process(marked(1, -30.0))
    assert inner.fed == [*range(1100 - frames_for(REPLAY_S), 1100), 1]
    assert frames_for(REPLAY_S) * FRAME_S >= 2.0  # openWakeWord looks back ~1.96 s


def test_a_detection_on_a_replayed_frame_is_reported() -> None:
    inner = Recorder()
    gated = GatedDetector(inner, gate())
    for value in (100, 7, 101):
        gated.process(marked(value, -60.0))
    assert gated.process(marked(1, -30.0)) == Detection("w", 0.9)


def test_reset_forgets_skipped_frames_and_resets_the_detector() -> None:
    inner = Recorder()
    gated = GatedDetector(inner, gate())
    for i in range(100, 105):
        gated.process(marked(i, -60.0))
    gated.reset()
    gated.process(marked(1, -30.0))
    assert inner.fed == [1] and inner.resets == 1


def oww() -> OwwDetector:
    melspec, embedding = feature_model_paths(models_dir())
    return OwwDetector(
        models={"hey_jarvis": wake_model_path(models_dir(), "hey_jarvis")},
        melspec=melspec,
        embedding=embedding,
        threshold=0.5,
        patience=WakeSettings().patience,
        noise_suppression=WakeSettings().noise_suppression,
    )


def scored(detector: OwwDetector | GatedDetector, frames: list[Frame]) -> list[tuple[int, float]]:
    hits = []
    for index, frame in enumerate(frames):
        hit = detector.process(frame)
        if hit is not None:
            hits.append((index, round(hit.score, 5)))
    return hits


def noisy(samples: Frame, snr_db: float, seed: int) -> Frame:
    rng = np.random.default_rng(seed)
    voiced = samples[np.abs(samples) > 300].astype(np.float64)
    noise_rms = np.sqrt(np.mean(voiced**2)) / 10 ** (snr_db / 20)
    mixed = samples + rng.normal(0.0, noise_rms, len(samples))  # white noise
    return np.clip(np.round(mixed), -32768, 32767).astype(np.int16)


@pytest.mark.integration
@pytest.mark.parametrize("snr_db", [None, 20.0])
def test_gated_openwakeword_detects_exactly_as_ungated(
    speech_cache: Path, snr_db: float | None
) -> None:
    """Same frames, same scores, with the wake model run only on a fraction of them."""
    clip = speak("hey jarvis, turn on the kitchen lights", cache_dir=speech_cache)
    gap = [np.zeros(round(s * SAMPLE_RATE), np.int16) for s in (12.0, 8.0, 4.0)]
    speech = np.concatenate([gap[0], clip, gap[1], clip, gap[2]])
    audio = noisy(speech, snr_db, seed=4) if snr_db is not None else speech
    hum = room_tone(len(audio) / SAMPLE_RATE, seed=1)
    audio = np.clip(audio.astype(np.int32) + hum, -32768, 32767).astype(np.int16)
    frames = split_frames(audio[: len(audio) // 1280 * 1280])
    plain = scored(oww(), frames)
    gated = GatedDetector(oww(), gate(hangover_s=2.0))
    assert scored(gated, frames) == plain
    assert plain, "the wake word was not detected at all"
    skipped = 1 - gated.frames_scored / len(frames)
    print(f"SNR {snr_db}: gate skipped {skipped:.0%} of {len(frames)} frames, hits {plain}")
    if snr_db is None:
        assert skipped > 0.5


def test_unwrapping_scores_the_held_frames_first() -> None:
    """A reload turning the gate off: the detector's history has no gap."""
    inner = Recorder()
    gated = GatedDetector(inner, gate())
    for i in range(100, 105):
        gated.process(marked(i, -60.0))
    assert gated.unwrap() is inner
    assert inner.fed == list(range(100, 105))
