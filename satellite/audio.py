"""Microphone capture (pyaudio on ALSA) and conversion to 16 kHz mono 80 ms frames."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from satellite.config import AudioSettings
from satellite.errors import AudioError
from satellite.frames import FRAME_S, FRAME_SAMPLES, SAMPLE_RATE, Frame

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputDevice:
    """A capture device as PortAudio lists it."""

    index: int
    name: str
    channels: int
    default_rate: int


def list_inputs(pa: Any) -> list[InputDevice]:
    """Every device that can capture, in PortAudio's order."""
    devices = []
    for index in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(index)
        if int(info["maxInputChannels"]) > 0:
            devices.append(
                InputDevice(
                    index,
                    str(info["name"]),
                    int(info["maxInputChannels"]),
                    int(info["defaultSampleRate"]),
                )
            )
    return devices


def pick_device(devices: list[InputDevice], spec: str) -> InputDevice:
    """The device `spec` names: an index, an exact name, or a unique-enough substring."""
    if spec.isdigit():
        for device in devices:
            if device.index == int(spec):
                return device
    for device in devices:
        if device.name == spec:
            return device
    for device in devices:
        if spec.lower() in device.name.lower():
            return device
    names = ", ".join(f"{d.index}: {d.name}" for d in devices) or "none"
    raise AudioError(f"no capture device matches {spec!r} (capture devices: {names})")


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


class Capture:
    """Reads the microphone on its own thread into a bounded queue of raw chunks.

    The capture thread never waits for the consumer: when the queue is full the oldest chunk
    is dropped and counted. Reads are blocking reads on our own thread (no PortAudio callback
    thread); a read error closes the stream and reopens it with capped backoff.
    """

    def __init__(self, settings: AudioSettings, *, pyaudio_module: Any = None) -> None:
        self.settings = settings
        self._pyaudio = pyaudio_module or _import_pyaudio()
        self._pa: Any = None
        self._stream: Any = None
        self.device: InputDevice | None = None
        self.rate = 0
        self.dropped = 0
        self.chunks_read = 0
        self._queue: queue.Queue[bytes] = queue.Queue(maxsize=settings.queue_frames)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def open(self) -> None:
        """Open the configured device (AudioError if impossible) and start the capture thread."""
        self._open_stream()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self._thread.start()

    def read(self, timeout: float) -> bytes | None:
        """The next chunk, or None if none arrived within `timeout` seconds."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        """Stop the thread and release the device; idempotent."""
        self._stop.set()
        if self._thread is not None:
            # A hung read cannot be interrupted safely; the thread is a daemon and dies with us.
            self._thread.join(timeout=2 * FRAME_S + 0.5)
            if self._thread.is_alive():
                return
        self._close_stream()

    def __enter__(self) -> Capture:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open_stream(self) -> None:
        if self._pa is None:
            with native_stderr_silenced():
                self._pa = self._pyaudio.PyAudio()
        self.device = pick_device(list_inputs(self._pa), self.settings.device)
        self.rate = self._pick_rate(self.device)
        try:
            self._stream = self._pa.open(
                format=self._pyaudio.paInt16,
                channels=self.settings.channels,
                rate=self.rate,
                input=True,
                input_device_index=self.device.index,
                frames_per_buffer=self.chunk_samples,
            )
        except (OSError, ValueError) as exc:
            raise AudioError(
                f"cannot open capture device {self.device.name!r} at {self.rate} Hz, "
                f"{self.settings.channels} channel(s): {exc}"
            ) from exc
        log.info(
            "microphone open: %r at %d Hz, %d channel(s)",
            self.device.name,
            self.rate,
            self.settings.channels,
        )

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

    @property
    def chunk_samples(self) -> int:
        """Samples per channel in one read: 80 ms at the capture rate."""
        return max(1, round(self.rate * FRAME_S))

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                chunk = self._stream.read(self.chunk_samples, exception_on_overflow=False)
            except (OSError, AttributeError):
                log.exception("microphone %r read failed; reopening", self.settings.device)
                backoff = self._reopen(backoff)
                continue
            backoff = 0.5
            self.chunks_read += 1
            self._put(chunk)

    def _put(self, chunk: bytes) -> None:
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

    def _reopen(self, backoff: float) -> float:
        self._close_stream()
        while not self._stop.wait(backoff):
            try:
                self._open_stream()
                return 0.5
            except AudioError as exc:
                log.error("microphone still unavailable: %s", exc)
                backoff = min(backoff * 2, 30.0)
        return backoff

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.stop_stream()
                stream.close()
            except OSError:
                log.debug("closing the stream failed", exc_info=True)
        if self._pa is not None:
            self._pa.terminate()
            self._pa = None


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Hide what C libraries print on fd 2 while PortAudio scans its host APIs.

    Pa_Initialize probes every ALSA card and JACK, and alsa-lib and libjack print a screen of
    "cannot find card" / "jack server is not running" lines that are not errors for us. Only
    that scan is silenced; opening the device is not, so a real failure stays visible. Other
    threads' writes to stderr during the scan (a few tens of ms) are lost too.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _import_pyaudio() -> Any:
    try:
        import pyaudio
    except ImportError as exc:
        raise AudioError("pyaudio is not installed: run install.sh") from exc
    return pyaudio
