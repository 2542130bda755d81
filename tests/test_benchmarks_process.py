"""The whole-process benchmark's own arithmetic: sessions from frames, CPU from /proc."""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from benchmarks.process import Stream, process_cpu_s, run_child


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
