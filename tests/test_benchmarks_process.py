"""The whole-process benchmark's own arithmetic: sessions from frames, CPU from /proc."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.process import Stream, bare_cpu, process_cpu_s, run_child
from benchmarks.signals import room_tone
from satellite.core.frames import FRAME_S
from tests.support.satellite_proc import models_dir
from tests.support.speech import save_wav


def test_spans_are_the_runs_of_listening_frames() -> None:
    listening = [False, True, True, False, False, True, False, True]
    stream = Stream("s", np.zeros(1280 * len(listening), np.int16), listening)
    assert stream.spans == [(1, 3), (5, 6), (7, 8)]
    assert stream.audio_s == len(listening) * 0.08


def test_process_cpu_counts_this_process_busy_time() -> None:
    before = process_cpu_s(os.getpid())
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:  # burn CPU, not wall time
        pass
    assert process_cpu_s(os.getpid()) - before >= 0.1


def test_a_child_s_cpu_and_output_are_its_own() -> None:
    burn = "import time\nt = time.process_time() + 0.2\nwhile time.process_time() < t: pass\n"
    burn += "print('ok')"
    child = run_child([sys.executable, "-c", burn], timeout=30)
    assert child.stdout.strip() == "ok"
    assert 0.15 <= child.cpu_s < 5


@pytest.mark.integration
def test_the_paced_bare_loop_takes_a_frame_per_80_ms_and_the_other_runs_back_to_back(
    tmp_path: Path,
) -> None:
    frames = 25  # 2 s of audio
    wav = tmp_path / "tone.wav"
    save_wav(wav, room_tone(frames * FRAME_S))
    walls = {}
    for paced in (False, True):
        started = time.monotonic()
        result = bare_cpu(models_dir(), wav, [], paced=paced)
        walls[paced] = time.monotonic() - started
        assert result["wake_s"] > 0
        assert result["vosk_s"] == 0
    # The model load is the same in both children; pacing adds the audio's own length.
    assert walls[True] - walls[False] >= 0.9 * frames * FRAME_S
