"""Runs the real pipeline on WAV files, faster than real time, printing one JSON line per event."""

from __future__ import annotations

import json
import logging
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from satellite.audio.capture import FrameAssembler
from satellite.core.frames import FRAME_S, FRAME_SAMPLES, Frame
from satellite.core.session import SessionMachine
from satellite.errors import AudioError
from satellite.mqtt.outbound import Outbox, Outgoing

log = logging.getLogger(__name__)

# Silence fed after each file so an utterance that runs to the end of the file can end.
TAIL_SILENCE_S = 6.0


@dataclass(frozen=True)
class SimulationReport:
    """How much audio went through and how fast."""

    audio_s: float
    wall_s: float
    events: int

    @property
    def speed(self) -> float:
        """Multiple of real time."""
        return self.audio_s / self.wall_s if self.wall_s > 0 else float("inf")


def read_wav(path: Path) -> list[Frame]:
    """A WAV file (16-bit PCM, any rate, first channel) as 16 kHz mono frames."""
    try:
        with wave.open(str(path), "rb") as wav:
            if wav.getsampwidth() != 2:
                raise AudioError(f"{path}: only 16-bit PCM WAV is supported")
            assembler = FrameAssembler(
                rate=wav.getframerate(), channels=wav.getnchannels(), channel=0
            )
            return assembler.push(wav.readframes(wav.getnframes()))
    except (OSError, wave.Error, EOFError) as exc:
        raise AudioError(f"{path}: cannot read WAV: {exc}") from exc


def simulate(
    files: list[Path],
    *,
    machine: SessionMachine,
    outbox: Outbox,
    out: TextIO,
    send: Callable[[Outgoing], None] | None = None,
) -> SimulationReport:
    """Feed every file (then some silence) through `machine`; print each event's message."""
    silence = [np.zeros(FRAME_SAMPLES, np.int16)] * round(TAIL_SILENCE_S / FRAME_S)
    started, frames, events = time.perf_counter(), 0, 0
    for path in files:
        for frame in [*read_wav(path), *silence]:
            frames += 1
            for event in machine.process(frame):
                events += 1
                _emit(outbox.messages(event), out, send)
    return SimulationReport(frames * FRAME_S, time.perf_counter() - started, events)


def _emit(messages: list[Outgoing], out: TextIO, send: Callable[[Outgoing], None] | None) -> None:
    first = messages[0]
    line = {
        "topic_type": str(first.topic_type),
        "topic": first.topic,
        "qos": first.qos,
        "payload": first.message.model_dump(mode="json", exclude_none=True),
    }
    out.write(json.dumps(line) + "\n")
    out.flush()
    if send is not None:
        for message in messages:
            send(message)
