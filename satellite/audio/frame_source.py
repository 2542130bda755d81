"""The one frame loop: microphone chunks -> 80 ms frames -> the session machine.

The daemon's pipeline thread and `satellite listen` both run it: `FrameSource` reads the
capture queue and resamples, `FrameProcessor` feeds the machine and keeps a machine that
raises on every frame from flooding the log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from satellite.audio.capture import Capture, FrameAssembler
from satellite.core.frames import Frame, frames_for
from satellite.core.session import Event, FaultChanged, SessionMachine

log = logging.getLogger(__name__)

# A read waits this long at most, so whoever runs the loop gets a turn this often even while
# the microphone is silent, stalled or lost (its faults come through Capture's on_fault).
POLL_S = 0.1
# A frame that fails is logged with its traceback; failures after it only as one line with
# the count this often, however many frames fail.
FAILURE_LOG_S = 30.0
# Failing this many frames in a row is a fault (state `error`), until one processes again.
FAULT_AFTER_FRAMES = frames_for(0.4)


def _nothing() -> None:
    """The default turn between reads: nothing to do."""


class FrameSource:
    """Reads a Capture and hands its 16 kHz mono frames to a consumer, on the caller's thread.

    A device reopened (maybe at another rate) or another Capture assigned to `capture` gets a
    fresh resampler.
    """

    def __init__(self, capture: Capture, *, poll_s: float = POLL_S) -> None:
        self.capture = capture
        self.poll_s = poll_s
        self._assembler: FrameAssembler | None = None
        self._assembled: tuple[Capture, int] | None = None  # what `_assembler` converts

    def run(
        self,
        on_frame: Callable[[Frame], None],
        stop: threading.Event,
        *,
        between_reads: Callable[[], None] = _nothing,
    ) -> None:
        """Until `stop` is set: `between_reads()`, then `on_frame` for each frame of a read."""
        while not stop.is_set():
            between_reads()
            for frame in self.read():
                on_frame(frame)

    def read(self) -> list[Frame]:
        """The frames the next chunk completes: none if no chunk came within `poll_s`."""
        capture = self.capture
        chunk = capture.read(timeout=self.poll_s)
        if chunk is None:
            return []
        return self._assembler_for(capture).push(chunk)

    def _assembler_for(self, capture: Capture) -> FrameAssembler:
        if self._assembler is None or self._assembled != (capture, capture.generation):
            settings = capture.settings
            self._assembler = FrameAssembler(
                rate=capture.rate, channels=settings.channels, channel=settings.channel
            )
            self._assembled = (capture, capture.generation)
        return self._assembler


class FrameProcessor:
    """Feeds frames to a session machine; frames that fail are logged at a bounded rate.

    A failure is logged with its traceback, the ones after it (until a frame processes) as one
    line per FAILURE_LOG_S with their count: one line per FAILURE_LOG_S at most, in all.
    FAULT_AFTER_FRAMES failures in a row are a fault, reported through the machine
    (FaultChanged events) and cleared by the next frame that processes.
    """

    def __init__(
        self,
        *,
        log_every_s: float = FAILURE_LOG_S,
        fault_after: int = FAULT_AFTER_FRAMES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log_every_s = log_every_s
        self.fault_after = fault_after
        self._clock = clock
        self.processed = 0  # frames the machine took without raising
        self.failed = 0  # frames it raised on, in all
        self._in_a_row = 0
        self._unlogged = 0
        self._next_log_at = -float("inf")
        self._traceback_due = True  # the first failure, and the first after a recovery
        self._fault: str | None = None

    def process(self, machine: SessionMachine, frame: Frame) -> list[Event]:
        """`machine.process(frame)`, or the fault events its failing calls for (often none)."""
        try:
            events = machine.process(frame)
        except Exception as exc:  # a bug in one frame must not end the loop
            return self._failure(machine, exc)
        self.processed += 1
        self._in_a_row, self._traceback_due = 0, True
        if self._fault is None:
            return events
        log.info("frames process again")
        self._fault = None
        return [*_set_fault(machine, None), *events]

    def _failure(self, machine: SessionMachine, exc: Exception) -> list[Event]:
        self.failed += 1
        self._in_a_row += 1
        self._unlogged += 1
        self._log_failure(exc)
        if self._in_a_row < self.fault_after or self._fault is not None:
            return []
        self._fault = f"processing audio fails: {exc.__class__.__name__}: {exc}"
        return _set_fault(machine, self._fault)

    def _log_failure(self, exc: Exception) -> None:
        now = self._clock()
        if now < self._next_log_at:
            return
        self._next_log_at = now + self.log_every_s
        count, self._unlogged = self._unlogged, 0
        if self._traceback_due:
            self._traceback_due = False
            log.error("processing a frame failed; continuing", exc_info=exc)
            return
        log.error(
            "processing frames still fails: %d failed since the last report (last: %s: %s)",
            count,
            exc.__class__.__name__,
            exc,
        )


def _set_fault(machine: SessionMachine, reason: str | None) -> list[Event]:
    """The machine's fault events; if the broken machine cannot even say so, the event alone."""
    try:
        return machine.set_fault(reason)
    except Exception:
        log.debug("the failing machine could not take its fault", exc_info=True)
        return [FaultChanged(machine.new_id(), reason)]
