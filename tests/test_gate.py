"""The silence gate: closed on room tone, open on sound, and nothing lost when it opens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.signals import room_tone
from satellite.audio.gate import (
    FLOOR_WINDOW_S,
    REPLAY_S,
    EnergyGate,
    GatedDetector,
    VoiceEnd,
    last_pause,
)
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


def test_floor_follows_a_louder_room_after_its_window() -> None:
    g = gate()
    for frame in tone(-60.0, 20):
        g.update(frame)
    louder = [g.update(frame) for frame in tone(-40.0, frames_for(FLOOR_WINDOW_S) + 10)]
    assert louder[0] and not louder[-1]  # a fan switched on: open at first, then the new floor
    assert g.floor_dbfs == pytest.approx(-40.0, abs=0.1)


def test_voice_end_times_silence_to_the_10_ms_window() -> None:
    voice = VoiceEnd()
    for frame in split_frames(room_tone(6.0)):
        voice.update(frame)
    speech = np.concatenate(tone(-20.0, 5))[: round(0.35 * SAMPLE_RATE)]
    audio = np.concatenate([speech, room_tone(1.25, seed=3)[: 1280 * 10 - len(speech)]])
    silences = [voice.update(frame) for frame in split_frames(audio)]
    # Voice until 0.35 s: silence 0.05 s at the end of frame 5 (0.40 s), then +0.08 per frame.
    assert silences[:4] == [0.0] * 4
    assert silences[4] == pytest.approx(0.05, abs=0.011)
    assert silences[9] == pytest.approx(0.45, abs=0.011)


def spoken(*parts: tuple[str, float]) -> Frame:
    """Room tone (about -61 dBFS) with a -20 dBFS tone where a part is "voice"."""
    pieces: list[Frame] = []
    for kind, seconds in parts:
        n = round(seconds * SAMPLE_RATE)
        noise = room_tone(seconds, seed=len(pieces))[:n].astype(np.float64)
        if kind == "voice":
            t = np.arange(n) / SAMPLE_RATE
            noise += 0.1 * 32768 * np.sqrt(2) * np.sin(2 * np.pi * 440 * t)
        pieces.append(np.round(noise).astype(np.int16))
    return np.concatenate(pieces)


FLOOR = -61.0  # room_tone's level


def test_last_pause_is_the_middle_of_the_pause_after_the_wake_word() -> None:
    audio = spoken(("pause", 0.3), ("voice", 0.8), ("pause", 0.2), ("voice", 0.2))
    assert last_pause(audio, FLOOR) == pytest.approx(1.2 * SAMPLE_RATE, abs=160)


def test_a_pause_still_going_at_the_detection_counts() -> None:
    audio = spoken(("pause", 0.3), ("voice", 0.8), ("pause", 0.3))
    assert last_pause(audio, FLOOR) == pytest.approx(1.25 * SAMPLE_RATE, abs=160)


def test_a_pause_after_the_detection_counts_and_the_window_is_before_the_detection() -> None:
    audio = spoken(("pause", 0.3), ("voice", 0.8), ("pause", 0.2), ("voice", 0.2))
    # Detected 0.1 s into "jarvis": the pause after it (0.2 s later) is found.
    detected = round(0.6 * SAMPLE_RATE)
    assert last_pause(audio, FLOOR, detected) == pytest.approx(1.2 * SAMPLE_RATE, abs=160)
    # Detected late, 0.8 s after the pause ended: too long after it to be the wake word's.
    late = spoken(("voice", 0.8), ("pause", 0.2), ("voice", 1.0))
    assert last_pause(late, FLOOR, round(1.8 * SAMPLE_RATE)) is None
    assert last_pause(late, FLOOR, round(1.3 * SAMPLE_RATE)) is not None


def test_the_widest_pause_near_the_end_wins() -> None:
    audio = spoken(("voice", 0.6), ("pause", 0.12), ("voice", 0.1), ("pause", 0.25), ("voice", 0.1))
    assert last_pause(audio, FLOOR) == pytest.approx(0.945 * SAMPLE_RATE, abs=160)


def test_no_pause_without_a_long_enough_quiet_run_near_the_end() -> None:
    assert last_pause(spoken(("voice", 1.5)), FLOOR) is None
    # Shorter than a pause (the closure of a stop consonant).
    assert last_pause(spoken(("voice", 1.0), ("pause", 0.06), ("voice", 0.4)), FLOOR) is None
    # The silence before the wake phrase: ended too long before the detection.
    assert last_pause(spoken(("pause", 0.5), ("voice", 0.8)), FLOOR) is None
    # Quiet is judged against the floor: in a room as loud as the voice nothing is a pause.
    assert last_pause(spoken(("voice", 1.0), ("pause", 0.2), ("voice", 0.2)), -25.0) is None
    assert last_pause(spoken(("pause", 1.5)), FLOOR) is None
    # A voice only 15 dB over a noisy room: its soft sounds would pass for pauses.
    assert last_pause(spoken(("voice", 1.0), ("pause", 0.2), ("voice", 0.2)), -35.0) is None
    assert last_pause(spoken(("voice", 1.0), ("pause", 0.2), ("voice", 0.2)), -41.0) is not None


def test_voice_end_finds_the_pause_against_its_own_floor() -> None:
    voice = VoiceEnd()
    audio = spoken(("pause", 5.0), ("voice", 0.8), ("pause", 0.2), ("voice", 0.2))
    for f in split_frames(audio):
        voice.update(f)
    assert voice.floor_dbfs == pytest.approx(FLOOR, abs=1.0)
    preroll = audio[-round(1.5 * SAMPLE_RATE) :]
    assert voice.pause_in(preroll, len(preroll)) == pytest.approx(1.2 * SAMPLE_RATE, abs=160)


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
