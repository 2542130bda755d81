"""Corpus audio through the real session machine, one 80 ms frame at a time, in worker processes.

Each worker builds one machine from the settings (as the daemon does) and runs clips on it.
Between clips it mutes and unmutes (which drops any utterance and resets the wake detector)
around a few seconds of the clip's own noise, so the silence gate's floor is the clip's. The
long stream goes through one machine in one piece. With `sweep`, every clip is then run again
through the machine's wake detector alone, recording the score of every frame it scores, so
other thresholds can be evaluated offline (benchmarks.sweep). For clean positives, the floor:
what bare Vosk (benchmarks.bare) makes of the command spoken alone.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bare import BareEngines
from benchmarks.corpus import Clip, Corpus, load
from benchmarks.sweep import ScoreTrace
from satellite.config import Settings
from satellite.core.frames import FRAME_SAMPLES, SAMPLE_RATE, Frame, frames_for, split_frames
from satellite.core.session import Event, Final, Idle, SessionMachine, WakeDetected
from satellite.runtime.engines import build_machine

# A wake word counts for a clip when it is reported between the start of the speech and this
# long after its end (openWakeWord fires a few frames after the word; commands follow it).
DETECT_GRACE_S = 1.0
CHUNK = 4  # clips per task
SETTLE_S = 6.0  # longer than the silence gate's noise-floor window (satellite.audio.gate, 5 s)


@dataclass(frozen=True)
class Session:
    """One wake: the frame it was reported on, when it ended, and its final text (if any)."""

    wake_frame: int
    end_frame: int
    score: float
    text: str | None


@dataclass(frozen=True)
class Run:
    """What the machine did on one clip, or on the long stream (name "stream")."""

    name: str
    frames: int
    sessions: tuple[Session, ...]
    window: tuple[int, int] | None  # frames in which a wake detects the clip's speech
    trace: ScoreTrace | None
    cpu_s: float
    floor_text: str | None = None  # bare Vosk on the command alone (clean positives)


class _SessionLog:
    """Folds the machine's events into Sessions."""

    def __init__(self) -> None:
        self.sessions: list[Session] = []
        self._open: tuple[int, float] | None = None
        self._text: str | None = None

    def add(self, frame: int, event: Event) -> None:
        if isinstance(event, WakeDetected):
            self._open, self._text = (frame, event.score), None
        elif isinstance(event, Final):
            self._text = event.transcript.text
        elif isinstance(event, Idle):
            self.close(frame)

    def close(self, frame: int) -> None:
        if self._open is not None:
            wake_frame, score = self._open
            self.sessions.append(Session(wake_frame, frame, score, self._text))
            self._open = None


class ScoreTap:
    """Stands in for the innermost wake scorer and records the score of every frame it scores."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.frame = 0  # index of the input frame being processed, set by the caller
        self.frames: list[int] = []
        self.scores: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # threshold, scores, close, ...

    def process(self, frame: Frame) -> Any:
        """The wrapped scorer's result; its best score is recorded."""
        detection = self.inner.process(frame)
        self.frames.append(self.frame)
        self.scores.append(max(self.inner.scores.values(), default=0.0))
        return detection

    def reset(self) -> None:
        """Reset the wrapped scorer."""
        self.inner.reset()

    def take(self) -> ScoreTrace:
        """The recorded trace; the record starts again empty."""
        trace = ScoreTrace(np.array(self.frames, np.int32), np.array(self.scores, np.float32))
        self.frames, self.scores = [], []
        return trace


def install_tap(machine: SessionMachine) -> ScoreTap:
    """Put a ScoreTap around the scorer at the end of the `.detector` chain (inside any gate)."""
    holder: Any = machine
    while hasattr(holder.detector, "detector"):
        holder = holder.detector
    tap = ScoreTap(holder.detector)
    holder.detector = tap
    return tap


class Runner:
    """One machine and the corpus: runs clips and the long stream through it."""

    def __init__(
        self, settings: Settings, corpus: Corpus, *, sweep: bool, quiet: bool = False
    ) -> None:
        """`quiet`: silence Kaldi's warnings (loading an engine sets its level back to -1)."""
        self.machine = build_machine(settings)
        self.corpus = corpus
        self.tap = install_tap(self.machine) if sweep else None
        # Noise after a clip, fed only while a session is still open.
        stt = settings.stt
        self.extra_s = stt.max_utterance_s + stt.no_speech_timeout_s
        self.settings = settings
        self.quiet = quiet
        self._bare: BareEngines | None = None
        self._quiet()

    def clip(self, clip: Clip) -> Run:
        """A clip through the machine, then (with a tap) through its wake detector alone."""
        started = time.process_time()
        rendered = self.corpus.render(clip, extra_s=self.extra_s)
        frames = split_frames(rendered.samples)
        grace = round(DETECT_GRACE_S * SAMPLE_RATE)
        window = (
            rendered.speech_start // FRAME_SAMPLES,
            (rendered.speech_end + grace) // FRAME_SAMPLES,
        )
        clip_frames = -(-rendered.clip_samples // FRAME_SAMPLES)
        # The clip's own tail noise, heard first so the gate's noise floor is this clip's.
        settle = min(frames_for(SETTLE_S), frames_for(self.corpus.spec.tail_s))
        end = rendered.clip_samples
        lead = split_frames(rendered.samples[end - settle * FRAME_SAMPLES : end])
        sessions, fed = self._replay(frames, clip_frames, lead)
        # No lead for the trace: the clip's tail has just set the gate's floor the same way.
        trace = self._trace(frames[:clip_frames], [])
        floor = self.floor(clip) if clip.kind == "positive" and clip.snr_db is None else None
        cpu_s = time.process_time() - started
        return Run(clip.id, fed, sessions, window, trace, cpu_s, floor)

    def floor(self, clip: Clip) -> str:
        """Bare Vosk's text for the clip's command spoken alone (the STT floor)."""
        if self._bare is None:
            s = self.settings
            self._bare = BareEngines(s.models.dir, list(s.wake.models), s.stt.model)
            self._quiet()
        bare = self._bare
        bare.start_stt()
        results = [bare.stt(frame) for frame in split_frames(self.corpus.render_command(clip))]
        texts = [json.loads(r).get("text", "") for r in [*results, bare.finish_stt()]]
        return " ".join(text for text in texts if text)

    def stream(self) -> Run:
        """The long stream, continuously, through one machine."""
        started = time.process_time()
        frames = split_frames(self.corpus.render_stream())
        sessions, fed = self._replay(frames, len(frames), [])
        trace = self._trace(frames, [])
        return Run("stream", fed, sessions, None, trace, time.process_time() - started)

    def _quiet(self) -> None:
        if self.quiet:
            import vosk

            # Kaldi's per-utterance alignment warnings, from both workers, drown the progress.
            vosk.SetLogLevel(-2)

    def _start(self, lead: list[Frame]) -> None:
        """Make the clip's result independent of the clips run before it on this machine.

        Mute and unmute (no utterance, the wake detector reset), hear `lead` (events dropped)
        so the silence gate's noise floor, which a reset keeps, follows this clip's noise, then
        reset again (a reset leaves the detector as after a quiet room, the same every time).
        """
        for frames in (lead, []):
            self.machine.set_muted(True)
            self.machine.set_muted(False)
            for frame in frames:
                self.machine.process(frame)

    def _replay(
        self, frames: list[Frame], at_least: int, lead: list[Frame]
    ) -> tuple[tuple[Session, ...], int]:
        """Feed frames until `at_least` are in and no session is open; sessions, frames fed."""
        self._start(lead)
        log = _SessionLog()
        fed = 0
        for index, frame in enumerate(frames):
            if index >= at_least and not self.machine.listening:
                break
            fed += 1
            for event in self.machine.process(frame):
                log.add(index, event)
        log.close(fed - 1)
        return tuple(log.sessions), fed

    def _trace(self, frames: list[Frame], lead: list[Frame]) -> ScoreTrace | None:
        if self.tap is None:
            return None
        self._start(lead)
        self.tap.take()
        detector = self.machine.detector
        for index, frame in enumerate(frames):
            self.tap.frame = index
            detector.process(frame)
        return self.tap.take()


# --- worker processes ---

_WORKER: dict[str, Runner] = {}


def _init_worker(settings: Settings, corpus_dir: Path, sweep: bool) -> None:
    logging.basicConfig(level=logging.WARNING)
    _WORKER["runner"] = Runner(settings, load(corpus_dir), sweep=sweep, quiet=True)


def _task(clip_ids: tuple[str, ...]) -> list[Run]:
    runner = _WORKER["runner"]
    if clip_ids == ("stream",):
        return [runner.stream()]
    clips = {clip.id: clip for clip in runner.corpus.clips}
    return [runner.clip(clips[clip_id]) for clip_id in clip_ids]


def run_corpus(settings: Settings, corpus: Corpus, *, sweep: bool, workers: int) -> list[Run]:
    """Every clip and the long stream, over `workers` processes with one machine each."""
    ids = [clip.id for clip in corpus.clips]
    tasks = [("stream",), *(tuple(ids[i : i + CHUNK]) for i in range(0, len(ids), CHUNK))]
    runs: list[Run] = []
    # spawn: each worker starts clean (no inherited onnxruntime or Vosk threads).
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, _init_worker, (settings, corpus.directory, sweep)) as pool:
        for done in _progress(pool.imap_unordered(_task, tasks), len(ids) + 1):
            runs += done
    return runs


def _progress(results: Iterator[list[Run]], total: int) -> Iterator[list[Run]]:
    """Pass results through, printing how far along we are on stderr every 10%."""
    done, step, started = 0, max(1, total // 10), time.monotonic()
    for result in results:
        before, done = done, done + len(result)
        if done // step != before // step or done == total:
            elapsed = time.monotonic() - started
            print(f"  {done}/{total} runs, {elapsed:.0f} s", file=sys.stderr, flush=True)
        yield result
