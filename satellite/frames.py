"""The pipeline's audio format: 16 kHz mono int16, in 80 ms frames of 1280 samples."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 16000
FRAME_SAMPLES = 1280
FRAME_S = FRAME_SAMPLES / SAMPLE_RATE

Frame = npt.NDArray[np.int16]


def frames_for(seconds: float) -> int:
    """How many whole frames cover `seconds` (at least one)."""
    return max(1, round(seconds / FRAME_S))


def split_frames(samples: Frame) -> list[Frame]:
    """Whole 80 ms frames of `samples`; a trailing partial frame is padded with silence."""
    remainder = len(samples) % FRAME_SAMPLES
    if remainder:
        samples = np.concatenate([samples, np.zeros(FRAME_SAMPLES - remainder, np.int16)])
    return [samples[i : i + FRAME_SAMPLES] for i in range(0, len(samples), FRAME_SAMPLES)]
