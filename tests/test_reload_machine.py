"""A reload's new session machine hears on from the old one: the real engines, a wake word
said across the swap (runtime/engines.py: reload_machine)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from benchmarks.signals import in_room
from satellite.config import Settings
from satellite.core.frames import Frame, split_frames
from satellite.core.session import Final, SessionMachine, WakeDetected
from satellite.runtime.engines import Engines, build_machine, load_engines, reload_machine
from tests.support.satellite_proc import models_dir
from tests.support.speech import RATE, speak

pytestmark = pytest.mark.integration

BEFORE = Settings(room_id="salon", models={"dir": models_dir()})
# A reload that changes the machine, not the models: the end-of-utterance rule and the gate.
AFTER = Settings(
    room_id="salon",
    models={"dir": models_dir()},
    stt={"trailing_silence_s": 0.9},
    wake={"gate_margin_db": 7.0},
)


@pytest.fixture(scope="module")
def engines() -> Engines:
    return load_engines(BEFORE)


@pytest.fixture(scope="module")
def frames(speech_cache: Path) -> list[Frame]:
    command = speak("hey jarvis, turn on the kitchen lights", cache_dir=speech_cache)
    quiet = np.zeros(2 * RATE, np.int16)
    return split_frames(in_room(np.concatenate([quiet, command, quiet, quiet]), seed=3))


Swap = Callable[[SessionMachine], SessionMachine]


def hear(
    machine: SessionMachine, frames: list[Frame], swap_at: int = -1, swap: Swap | None = None
) -> tuple[list[tuple[int, float]], list[str]]:
    """(frame, score) of each wake and the finals' texts, the machine swapped at `swap_at`."""
    wakes: list[tuple[int, float]] = []
    finals: list[str] = []
    for index, frame in enumerate(frames):
        if index == swap_at and swap is not None:
            machine = swap(machine)
        for event in machine.process(frame):
            if isinstance(event, WakeDetected):
                wakes.append((index, event.score))
            elif isinstance(event, Final):
                finals.append(event.transcript.text)
    return wakes, finals


def test_a_wake_word_said_across_a_reload_still_wakes_on_the_same_frame(
    engines: Engines, frames: list[Frame]
) -> None:
    """At every frame of the wake word a swap changes nothing that was heard: the same
    detection (frame and score) and final as without it. Rebuilt from scratch, the machine
    lost the wake word when the swap came within ~0.5 s before the detection."""
    expected = hear(build_machine(BEFORE, engines), frames)
    assert len(expected[0]) == 1 and len(expected[1]) == 1 and expected[1][0]
    detected = expected[0][0][0]

    def swap(old: SessionMachine) -> SessionMachine:
        return reload_machine(AFTER, engines, old, same_engines=True)

    for swap_at in range(detected - 12, detected + 1):
        got = hear(build_machine(BEFORE, engines), frames, swap_at, swap)
        assert got == expected, f"swapped at frame {swap_at}, {detected - swap_at} before"


def test_a_reload_that_turns_the_gate_off_or_on_keeps_the_detection(
    engines: Engines, frames: list[Frame]
) -> None:
    expected = hear(build_machine(BEFORE, engines), frames)
    detected = expected[0][0][0]
    off = Settings(room_id="salon", models={"dir": models_dir()}, wake={"gate": False})
    for before, after in ((BEFORE, off), (off, BEFORE)):

        def swap(old: SessionMachine, after: Settings = after) -> SessionMachine:
            return reload_machine(after, engines, old, same_engines=True)

        for swap_at in (detected - 20, detected - 6, detected - 1):
            got = hear(build_machine(before, engines), frames, swap_at, swap)
            assert got == expected, f"{before.wake.gate} -> {after.wake.gate} at {swap_at}"
