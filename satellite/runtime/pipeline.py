"""The daemon's pipeline thread: the frame source -> the session machine -> `on_event`."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from satellite.audio.capture import Capture
from satellite.audio.frame_source import FrameProcessor, FrameSource
from satellite.core.frames import Frame
from satellite.core.requests import SessionRequest
from satellite.core.session import Event, Final, Idle, Listening, SessionMachine, WakeDetected
from satellite.runtime.memory import release_freed_memory

log = logging.getLogger(__name__)


def log_event(event: Event, audio_age_s: float = 0.0) -> None:
    """One lifecycle line per session event (never per frame), with journal fields.

    `audio_age_s`: how long ago the device handed over the audio that raised the event.
    """
    fields: dict[str, str] = {"SESSION_ID": event.session_id}
    if isinstance(event, Listening | Final):
        fields["UTT_ID"] = event.utt_id
    if isinstance(event, WakeDetected):
        log.info(
            "wake word %s (score %.2f, %.1f ms after its audio was read)",
            event.wake_word,
            event.score,
            audio_age_s * 1000,
            extra=fields,
        )
    elif isinstance(event, Final):
        words, confidence = len(event.transcript.words), event.transcript.confidence
        log.info("final transcript: %d words, confidence %.2f", words, confidence, extra=fields)
    else:
        log.debug("%s", event, extra=fields)


@dataclass(frozen=True)
class Swap:
    """A new session machine and/or microphone for the pipeline (a reload's), and when done."""

    # Builds the new machine from the old, idle one, on the pipeline thread.
    machine: Callable[[SessionMachine], SessionMachine] | None = None
    capture: Capture | None = None
    done: threading.Event = field(default_factory=threading.Event)


class Pipeline:
    """The pipeline thread: capture queue -> frames -> session machine -> `on_event`.

    Other threads change the session only through `request()`, applied between frames, and
    replace its machine or microphone only through `replace()`.
    """

    def __init__(
        self,
        *,
        capture: Capture,
        machine: SessionMachine,
        on_event: Callable[[Event], None],
        processor: FrameProcessor | None = None,
    ) -> None:
        self.source = FrameSource(capture)
        self.machine = machine
        self.on_event = on_event
        self.processor = processor if processor is not None else FrameProcessor()
        self._requests: queue.SimpleQueue[SessionRequest] = queue.SimpleQueue()
        self._swaps: queue.SimpleQueue[Swap] = queue.SimpleQueue()
        self._swap: Swap | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pipeline", daemon=True)

    @property
    def capture(self) -> Capture:
        """The microphone read now (a swap may replace it)."""
        return self.source.capture

    @property
    def frames_processed(self) -> int:
        """Frames the machine took without raising: the watchdog's evidence of progress."""
        return self.processor.processed

    def start(self) -> None:
        """Start consuming the capture queue."""
        self._thread.start()

    def request(self, change: SessionRequest) -> None:
        """Have the session machine apply `change` on the pipeline thread (from any thread)."""
        self._requests.put(change)

    def replace(self, swap: Swap) -> None:
        """Apply `swap` on the pipeline thread as soon as no utterance is in progress: the one
        being heard finishes on the old machine first. `swap.done` is set once it applied."""
        self._swaps.put(swap)

    def stop(self, timeout: float = 1.0) -> None:
        """Ask the thread to stop and wait (bounded) for it."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        self.source.run(self._process, self._stop, between_reads=self._between_reads)

    def _between_reads(self) -> None:
        self._apply_requests()
        self._apply_swap()

    def _apply_requests(self) -> None:
        while True:
            try:
                change = self._requests.get_nowait()
            except queue.Empty:
                return
            self._emit(self.machine.apply(change))

    def _apply_swap(self) -> None:
        if self._swap is None:
            try:
                self._swap = self._swaps.get_nowait()
            except queue.Empty:
                return
        if self.machine.listening:
            return
        swap, self._swap = self._swap, None
        if swap.capture is not None:
            old, self.source.capture = self.source.capture, swap.capture
            old.close()
            swap.capture.open()
            if old.fault is not None and swap.capture.fault is None:
                self._emit(self.machine.set_fault(None))
        if swap.machine is not None:
            self.machine = swap.machine(self.machine)
        swap.done.set()

    def _process(self, frame: Frame) -> None:
        self._emit(self.processor.process(self.machine, frame))

    def _emit(self, events: list[Event]) -> None:
        for event in events:
            self.on_event(event)
        if any(isinstance(event, Idle) for event in events):
            release_freed_memory()  # the decode's working memory, once its session is over
