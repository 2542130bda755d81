"""Microphone capture (pyaudio on ALSA) and conversion to 16 kHz mono 80 ms frames."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from satellite.audio.health import PaceCheck, alsa_refusal, native_stderr_silenced
from satellite.audio.portaudio import InputDevice, import_pyaudio, list_inputs, pick_device
from satellite.config import AudioSettings
from satellite.core.backoff import Backoff
from satellite.core.frames import FRAME_S, FRAME_SAMPLES, SAMPLE_RATE, Frame
from satellite.errors import AudioError

log = logging.getLogger(__name__)

# A device that will not open, or stops, is retried after 0.5 s, doubling up to 30 s (no
# jitter: a local device, nobody else to stay out of step with).
_RETRY_MIN_S = 0.5
_RETRY_MAX_S = 30.0
# While waiting to retry, `heartbeat` still advances this often: retrying is being alive.
_HEARTBEAT_S = 1.0
# A read this late is worth a line in the log: a stall, and a burst of audio may follow.
_STALL_S = 1.0
# PortAudio's paDeviceUnavailable: what ALSA's EBUSY becomes when a stream is opened.
_PA_DEVICE_UNAVAILABLE = -9985


class FrameAssembler:
    """Raw interleaved int16 chunks at any rate in, 16 kHz mono 1280-sample frames out."""

    def __init__(self, *, rate: int, channels: int, channel: int) -> None:
        self.channels = channels
        self.channel = channel
        self._resampler: Any = None
        if rate != SAMPLE_RATE:
            import soxr

            self._resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="int16")
        self._pending = np.zeros(0, np.int16)

    def push(self, chunk: bytes) -> list[Frame]:
        """Convert one chunk; return the whole frames now complete."""
        samples = np.frombuffer(chunk, dtype=np.int16)
        if self.channels > 1:
            samples = np.ascontiguousarray(samples[self.channel :: self.channels])
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples)
        pending = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        whole = len(pending) - len(pending) % FRAME_SAMPLES
        self._pending = pending[whole:].copy()
        return [pending[i : i + FRAME_SAMPLES] for i in range(0, whole, FRAME_SAMPLES)]


def _ignore_fault(reason: str | None) -> None:
    """The default `on_fault`: nobody listens."""


class Capture:
    """Reads the microphone on its own thread into a bounded queue of raw chunks.

    The capture thread never waits for the consumer: when the queue is full the oldest chunk
    is dropped and counted. Reads are blocking reads on our own thread (no PortAudio callback
    thread). A missing, busy or failing device is a fault, never an exception: it is logged
    once, reported through `on_fault(reason)` (on the capture thread, or the caller's for the
    first open), and retried with capped backoff until it works, then `on_fault(None)`.
    The only AudioError left is the constructor's, when pyaudio itself is missing.

    `heartbeat` counts successful reads and each second of waiting to retry, so it stops only
    while a read (or PortAudio's device scan) hangs. `generation` counts successful opens:
    `rate` and `device` may change with it.
    """

    def __init__(
        self,
        settings: AudioSettings,
        *,
        pyaudio_module: Any = None,
        on_fault: Callable[[str | None], None] = _ignore_fault,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.on_fault = on_fault
        self._pyaudio = pyaudio_module or import_pyaudio()
        self._clock = clock  # times reads for the pace check; retry waits use real time
        self._pa: Any = None
        self._stream: Any = None
        self._pace: PaceCheck | None = None
        self.device: InputDevice | None = None
        self.rate = 0
        self.generation = 0
        self.heartbeat = 0
        self.dropped = 0
        self.chunks_read = 0
        self._fault: str | None = None
        self._fault_since = 0.0
        # Each chunk with the monotonic time its read returned (its capture time, as near as
        # this process can know it).
        self._queue: queue.Queue[tuple[bytes, float]] = queue.Queue(maxsize=settings.queue_frames)
        self.read_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def fault(self) -> str | None:
        """Why the microphone is not delivering audio now, or None when it is."""
        return self._fault

    def open(self) -> None:
        """Open the device now if it is there, and start the capture thread (which retries
        while it is not); never raises for the device. Not reopenable after close()."""
        if self._thread is not None:
            return
        self._try_open()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self._thread.start()

    def read(self, timeout: float) -> bytes | None:
        """The next chunk, or None if none arrived within `timeout` seconds.

        `read_at` is then the monotonic time the device handed that chunk over.
        """
        try:
            chunk, self.read_at = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        return chunk

    def close(self) -> None:
        """Stop the thread, which releases the device; idempotent, and bounded by about
        0.7 s even while a read hangs (the thread then releases it if the read returns)."""
        self._stop.set()
        thread = self._thread
        if thread is None:
            self._close_stream()
            return
        thread.join(timeout=2 * FRAME_S + 0.5)
        if thread.is_alive():
            log.warning("microphone %r read still blocked at close", self.settings.device)

    def __enter__(self) -> Capture:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def chunk_samples(self) -> int:
        """Samples per channel in one read: 80 ms at the capture rate."""
        return max(1, round(self.rate * FRAME_S))

    # --- the capture thread (and the caller's, for the first open) ---------------------------

    def _run(self) -> None:
        backoff = Backoff(_RETRY_MIN_S, _RETRY_MAX_S)
        try:
            while not self._stop.is_set():
                if self._stream is None:
                    self._wait(backoff.next())
                    if not self._stop.is_set():
                        self._try_open()
                    continue
                try:
                    self._read_chunk()
                except Exception as exc:  # a bug must not end capture for good: retry
                    log.exception("microphone %r capture failed", self.settings.device)
                    self._fail(f"microphone {self.settings.device!r} capture failed: {exc!r}")
                if self._fault is None:
                    backoff.reset()
        finally:
            self._close_stream()

    def _wait(self, seconds: float) -> None:
        """Sleep `seconds` (close() cuts it short), a heartbeat a second: retrying is alive."""
        end = time.monotonic() + seconds
        while not self._stop.is_set() and (left := end - time.monotonic()) > 0:
            self._stop.wait(min(_HEARTBEAT_S, left))
            self.heartbeat += 1

    def _try_open(self) -> None:
        try:
            self._open_stream()
        except (AudioError, OSError) as exc:  # OSError: PortAudio's device queries
            self._close_stream()
            self._report(f"microphone {self.settings.device!r} unavailable: {exc}")

    def _open_stream(self) -> None:
        if self._pa is None:
            with native_stderr_silenced():
                try:
                    self._pa = self._pyaudio.PyAudio()
                except OSError as exc:
                    raise AudioError(f"PortAudio did not start: {exc}") from exc
        device = self._find_device()
        rate = self._pick_rate(device)
        self._stream = self._open_device(device, rate)
        self.device, self.rate = device, rate
        self._pace = PaceCheck(self.chunk_samples / rate, opened_at=self._clock())
        self._discard_queued()
        self.generation += 1
        log.log(
            logging.DEBUG if self._fault else logging.INFO,
            "microphone open: %r at %d Hz, %d channel(s)",
            device.name,
            rate,
            self.settings.channels,
        )

    def _find_device(self) -> InputDevice:
        spec = self.settings.device
        try:
            return pick_device(list_inputs(self._pa), spec)
        except AudioError as exc:
            # PortAudio's scan skips a device it cannot open, busy or not: ask ALSA why.
            refusal = None if spec.isdigit() else alsa_refusal(spec)
            if refusal is None:
                raise
            raise AudioError(refusal) from exc

    def _open_device(self, device: InputDevice, rate: int) -> Any:
        try:
            return self._pa.open(
                format=self._pyaudio.paInt16,
                channels=self.settings.channels,
                rate=rate,
                input=True,
                input_device_index=device.index,
                frames_per_buffer=max(1, round(rate * FRAME_S)),
            )
        except (OSError, ValueError) as exc:
            busy = isinstance(exc, OSError) and exc.errno == _PA_DEVICE_UNAVAILABLE
            why = f"device or resource busy ({exc})" if busy else str(exc)
            raise AudioError(
                f"cannot open capture device {device.name!r} at {rate} Hz, "
                f"{self.settings.channels} channel(s): {why}"
            ) from exc

    def _pick_rate(self, device: InputDevice) -> int:
        """The configured rate; else 16 kHz when the device takes it (no resampling), else
        the device's default rate."""
        if self.settings.rate is not None:
            return self.settings.rate
        try:
            self._pa.is_format_supported(
                SAMPLE_RATE,
                input_device=device.index,
                input_channels=self.settings.channels,
                input_format=self._pyaudio.paInt16,
            )
        except ValueError:
            return device.default_rate
        return SAMPLE_RATE

    def _read_chunk(self) -> None:
        try:
            chunk = self._stream.read(self.chunk_samples, exception_on_overflow=False)
            read_at = time.monotonic()
        except OSError as exc:
            self._fail(f"microphone {self.settings.device!r} read failed: {exc}")
            return
        self.heartbeat += 1
        self.chunks_read += 1
        pace = self._pace
        assert pace is not None  # set with the stream
        ahead = pace.add(self._clock())
        if pace.gap_s > _STALL_S:
            log.info(
                "no audio read for %.1f s (this process or the device stalled); what the "
                "device kept meanwhile is read at once",
                pace.gap_s,
            )
        if pace.too_fast(ahead):
            self._fail(
                f"microphone {self.settings.device!r} delivers audio faster than real time "
                f"({ahead:.2f} s ahead of the clock after {pace.audio_s:.2f} s of audio); "
                "the device is gone?"
            )
            return
        self._put((chunk, read_at))
        if pace.settled and self._fault is not None:
            self._recovered()

    def _put(self, chunk: tuple[bytes, float]) -> None:
        while True:
            try:
                self._queue.put_nowait(chunk)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def _discard_queued(self) -> None:
        # Chunks still queued from a previous stream may be at its rate: not worth a glitch.
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    def _fail(self, reason: str) -> None:
        self._close_stream()
        self._report(reason)

    def _report(self, reason: str) -> None:
        if reason == self._fault:
            log.debug("%s (still)", reason)
            return
        if self._fault is None:
            self._fault_since = time.monotonic()
        self._fault = reason
        log.error("%s; retrying every %g–%g s", reason, _RETRY_MIN_S, _RETRY_MAX_S)
        self._notify(reason)

    def _recovered(self) -> None:
        assert self.device is not None  # a stream is open
        self._fault = None
        log.info(
            "microphone %r recovered after %.1f s (device %r at %d Hz, %d channel(s))",
            self.settings.device,
            time.monotonic() - self._fault_since,
            self.device.name,
            self.rate,
            self.settings.channels,
        )
        self._notify(None)

    def _notify(self, reason: str | None) -> None:
        try:
            self.on_fault(reason)
        except Exception:
            log.exception("the microphone fault callback failed")

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.stop_stream()
                stream.close()
            except OSError:
                log.debug("closing the stream failed", exc_info=True)
        # Pa_Terminate also drops alsa-lib's cached config, so the next scan re-reads
        # ~/.asoundrc and /etc/asound.conf: a PCM defined later is found without a restart.
        pa, self._pa = self._pa, None
        if pa is not None:
            pa.terminate()
