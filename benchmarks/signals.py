"""The audio the benchmarks feed: room tone, espeak-ng speech, and where speech ends."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from satellite.core.frames import FRAME_SAMPLES, SAMPLE_RATE, Frame, split_frames
from tests.support.speech import speak

WAKE_COMMAND = "hey jarvis, turn on the kitchen lights"
COMMAND = "turn on the kitchen lights"
# Speech without the wake word (checked: the satellite does not wake on it).
NO_WAKE = (
    "what is the weather like tomorrow morning",
    "set a timer for ten minutes",
    "play some music in the living room",
    "the quick brown fox jumps over the lazy dog",
    "please turn off the lights in the bedroom",
)
ROOM_TONE_STD = 30.0
# A 10 ms window is voiced when its RMS exceeds this (espeak's padding is dither, RMS < 5).
VOICED_RMS = 200.0
VOICED_WINDOW = SAMPLE_RATE // 100

Samples = npt.NDArray[np.int16]


def room_tone(seconds: float, *, seed: int = 0) -> Samples:
    """Low-level Gaussian noise, like an empty room through a cheap microphone."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, ROOM_TONE_STD, round(seconds * SAMPLE_RATE))
    return np.clip(np.round(noise), -32768, 32767).astype(np.int16)


def pad_to_frames(samples: Samples) -> Samples:
    """`samples` followed by zeros up to a whole number of 80 ms frames."""
    remainder = len(samples) % FRAME_SAMPLES
    if not remainder:
        return samples
    return np.concatenate([samples, np.zeros(FRAME_SAMPLES - remainder, np.int16)])


def last_voiced_sample(samples: Samples) -> int:
    """Index of the last sample of the last voiced 10 ms window."""
    windows = len(samples) // VOICED_WINDOW
    blocks = samples[: windows * VOICED_WINDOW].astype(np.float64).reshape(windows, -1)
    rms = np.sqrt((blocks**2).mean(axis=1))
    voiced = np.flatnonzero(rms > VOICED_RMS)
    if not len(voiced):
        raise ValueError("no voiced audio")
    return int((voiced[-1] + 1) * VOICED_WINDOW - 1)


def in_room(samples: Samples, *, seed: int) -> Samples:
    """`samples` heard over room tone, as a microphone never gives digital silence."""
    mixed = samples.astype(np.int32) + room_tone(len(samples) / SAMPLE_RATE, seed=seed)
    clipped: Samples = np.clip(mixed, -32768, 32767).astype(np.int16)
    return clipped


class Speech:
    """The clips every figure uses, synthesised once per run, over room tone."""

    def __init__(self, cache_dir: Path) -> None:
        self.wake = in_room(pad_to_frames(speak(WAKE_COMMAND, cache_dir=cache_dir)), seed=1)
        spoken = np.concatenate([speak(text, cache_dir=cache_dir) for text in NO_WAKE])
        self.no_wake = in_room(pad_to_frames(spoken), seed=2)

    def wake_stream(self, repeats: int, tail_s: float) -> list[Frame]:
        """The wake command `repeats` times, each followed by `tail_s` of room tone."""
        parts: list[Samples] = []
        for i in range(repeats):
            parts += [self.wake, pad_to_frames(room_tone(tail_s, seed=100 + i))]
        return split_frames(np.concatenate(parts))

    def no_wake_stream(self, seconds: float) -> list[Frame]:
        """Speech without the wake word, repeated to about `seconds`."""
        repeats = max(1, round(seconds * SAMPLE_RATE / len(self.no_wake)))
        return split_frames(np.concatenate([self.no_wake] * repeats))


def silence_stream(seconds: float) -> list[Frame]:
    """Room tone in 80 ms frames."""
    return split_frames(pad_to_frames(room_tone(seconds)))
