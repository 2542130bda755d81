"""The audio format's one dBFS arithmetic: amplitudes and mean powers of int16 samples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from satellite.core.frames import FRAME_SAMPLES, SILENT_DBFS, amplitude_dbfs, rms_dbfs


def test_amplitude_dbfs_is_zero_at_full_scale_and_minus_inf_for_silence() -> None:
    assert amplitude_dbfs(32768.0) == 0.0
    assert amplitude_dbfs(16384.0) == pytest.approx(-6.0206, abs=1e-4)
    assert amplitude_dbfs(0.0) == -math.inf


def test_rms_dbfs_is_the_amplitude_of_the_rms_floored_at_silent_dbfs() -> None:
    t = np.arange(FRAME_SAMPLES) / 16000
    sine = np.round(0.25 * 32768 * np.sin(2 * np.pi * 500 * t)).astype(np.int16)
    rms = float(np.sqrt(np.mean(sine.astype(np.float64) ** 2)))
    assert rms_dbfs(sine) == pytest.approx(amplitude_dbfs(rms), abs=1e-4)
    assert rms_dbfs(np.zeros(FRAME_SAMPLES, np.int16)) == SILENT_DBFS
