"""The pipeline's audio format: 16 kHz mono int16, in 80 ms frames of 1280 samples."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 16000
FRAME_SAMPLES = 1280
FRAME_S = FRAME_SAMPLES / SAMPLE_RATE

Frame = npt.NDArray[np.int16]

SILENT_DBFS = -100.0  # the level of digital silence, so the floor arithmetic stays finite
FULL_SCALE_DB = 20.0 * math.log10(32768.0)


def frames_for(seconds: float) -> int:
    """How many whole frames cover `seconds` (at least one)."""
    return max(1, round(seconds / FRAME_S))


def split_frames(samples: Frame) -> list[Frame]:
    """Whole 80 ms frames of `samples`; a trailing partial frame is padded with silence."""
    remainder = len(samples) % FRAME_SAMPLES
    if remainder:
        samples = np.concatenate([samples, np.zeros(FRAME_SAMPLES - remainder, np.int16)])
    return [samples[i : i + FRAME_SAMPLES] for i in range(0, len(samples), FRAME_SAMPLES)]


def power_dbfs(power: float) -> float:
    """The level in dBFS of a mean power in int16 units squared (at least SILENT_DBFS)."""
    if power <= 0.0:
        return SILENT_DBFS
    return max(SILENT_DBFS, 10.0 * math.log10(power) - FULL_SCALE_DB)


def amplitude_dbfs(amplitude: float) -> float:
    """An amplitude in int16 units (a peak, an RMS) in dBFS; -inf for zero (digital silence)."""
    return 20.0 * math.log10(amplitude) - FULL_SCALE_DB if amplitude > 0 else -math.inf


def rms_dbfs(frame: Frame) -> float:
    """The RMS level of a frame of int16 samples in dBFS (SILENT_DBFS for all zeros)."""
    if len(frame) == 0:
        return SILENT_DBFS
    samples = frame.astype(np.float32)
    return power_dbfs(float(np.dot(samples, samples)) / len(frame))
