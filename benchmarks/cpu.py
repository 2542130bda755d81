"""CPU seconds per audio second: the satellite's stages vs the bare engines, same frames.

Both sides are timed frame by frame with `time.process_time_ns()` (every thread of this
process, so onnxruntime's pool counts), in alternating rounds so drift hits both alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from benchmarks.bare import BareEngines
from satellite.core.frames import FRAME_S, Frame
from satellite.core.session import SessionMachine, WakeDetected


@dataclass(frozen=True)
class Pass:
    """One pass over a stream: CPU ns per frame, and which frames the satellite listened on."""

    cpu_ns: list[int]
    listening: list[bool]


def satellite_pass(machine: SessionMachine, frames: Sequence[Frame]) -> Pass:
    """`SessionMachine.process` on every frame, as the daemon's pipeline thread runs it."""
    cpu_ns, listening = [], []
    clock = time.process_time_ns
    for frame in frames:
        was_listening = machine.listening
        start = clock()
        events = machine.process(frame)
        cpu_ns.append(clock() - start)
        opened = any(isinstance(event, WakeDetected) for event in events)
        listening.append(was_listening or opened)
    return Pass(cpu_ns, listening)


def bare_pass(
    engines: BareEngines,
    frames: Sequence[Frame],
    schedule: Sequence[bool],
    *,
    wake_while_listening: bool = False,
) -> Pass:
    """openWakeWord while the satellite was idle, Vosk while it listened (same frames).

    The frame that opens a session runs openWakeWord (which detects) and starts a recogniser.
    With `wake_while_listening`, openWakeWord also runs on every listening frame: the naive
    satellite the issue measures the listening stage against (both engines on every frame).
    """
    cpu_ns: list[int] = []
    clock = time.process_time_ns
    for i, frame in enumerate(frames):
        listening, before = schedule[i], i > 0 and schedule[i - 1]
        start = clock()
        if not before:
            engines.wake(frame)
            if listening:
                engines.start_stt()
        else:
            if wake_while_listening:
                engines.wake(frame)
            engines.stt(frame)
            if i + 1 == len(frames) or not schedule[i + 1]:
                engines.finish_stt()
        cpu_ns.append(clock() - start)
    return Pass(cpu_ns, list(schedule))


@dataclass(frozen=True)
class Comparison:
    """Satellite vs bare CPU per audio second on one stream, over several rounds."""

    stream: str
    audio_s: float
    satellite: float
    bare: float
    ratios: list[float]
    detections: int

    @property
    def ratio(self) -> float:
        """The median of the per-round ratios."""
        return statistics.median(self.ratios)

    def as_dict(self) -> dict[str, object]:
        """For the JSON report."""
        return {
            "stream": self.stream,
            "audio_s": round(self.audio_s, 2),
            "satellite_cpu_per_audio_s": round(self.satellite, 5),
            "bare_cpu_per_audio_s": round(self.bare, 5),
            "ratio": round(self.ratio, 3),
            "round_ratios": [round(r, 3) for r in self.ratios],
            "satellite_sessions": self.detections,
        }


Select = Callable[[Pass], list[bool]]


def idle_frames(run: Pass) -> list[bool]:
    """Frames the satellite processed in its wake stage only."""
    return [not listening for listening in run.listening]


def listening_frames(run: Pass) -> list[bool]:
    """Frames the satellite spent in (or opening) an utterance."""
    return list(run.listening)


def all_frames(run: Pass) -> list[bool]:
    """Every frame."""
    return [True] * len(run.listening)


def compare(
    name: str,
    frames: Sequence[Frame],
    *,
    machine: SessionMachine,
    engines: BareEngines,
    rounds: int,
    select: Select,
    wake_while_listening: bool = False,
) -> Comparison:
    """Alternate satellite and bare passes; sum the CPU of the frames `select` picks."""
    sat_total = bare_total = 0
    ratios: list[float] = []
    seconds = 0.0
    detections = 0
    for _ in range(rounds):
        sat = satellite_pass(machine, frames)
        bare = bare_pass(engines, frames, sat.listening, wake_while_listening=wake_while_listening)
        chosen = select(sat)
        sat_ns = sum(ns for ns, keep in zip(sat.cpu_ns, chosen, strict=True) if keep)
        bare_ns = sum(ns for ns, keep in zip(bare.cpu_ns, chosen, strict=True) if keep)
        sat_total, bare_total = sat_total + sat_ns, bare_total + bare_ns
        ratios.append(sat_ns / bare_ns if bare_ns else float("nan"))
        seconds += sum(chosen) * FRAME_S
        detections += _sessions(sat.listening)
    return Comparison(
        name, seconds, sat_total / 1e9 / seconds, bare_total / 1e9 / seconds, ratios, detections
    )


def _sessions(listening: list[bool]) -> int:
    return sum(1 for i, on in enumerate(listening) if on and (i == 0 or not listening[i - 1]))
