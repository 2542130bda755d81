"""Signs of an unwell capture device: stale audio too fast, ALSA's own refusal, scan noise."""

from __future__ import annotations

import collections
import contextlib
import ctypes
import errno
import functools
import math
import os
import sys
from collections.abc import Iterator
from typing import Any

_SND_CAPTURE = 1  # SND_PCM_STREAM_CAPTURE
_SND_NONBLOCK = 1  # SND_PCM_NONBLOCK: a probe must not wait for a busy device


class PaceCheck:
    """Tells a live microphone from one that hands back stale audio at once.

    alsa-lib's file plugin returns instantly, forever, once its FIFO writer is gone (no error);
    other dead devices can behave alike. A live device cannot deliver much faster than real
    time for long: its buffer holds a few periods (PortAudio asks for 4, 320 ms here), so a
    backlog drained after a stall stays well under half a `window_s` window.
    """

    def __init__(self, chunk_s: float, *, window_s: float = 1.0) -> None:
        self.chunks = max(2, math.ceil(window_s / chunk_s))
        self.audio_s = self.chunks * chunk_s
        self._times: collections.deque[float] = collections.deque(maxlen=self.chunks + 1)

    def add(self, at: float) -> float | None:
        """Record a read that returned at `at`; the speed (x real time) over the last window,
        or None until a whole window has been read."""
        self._times.append(at)
        if len(self._times) <= self.chunks:
            return None
        return self.audio_s / max(self._times[-1] - self._times[0], 1e-3)


def alsa_refusal(name: str) -> str | None:
    """Why alsa-lib refuses to open PCM `name` for capture right now (busy, no permission…),
    or None when it opens, when it is unknown to ALSA, or without alsa-lib."""
    try:
        lib = _libasound()
    except OSError:
        return None
    pcm = ctypes.c_void_p()
    with native_stderr_silenced():
        code = int(lib.snd_pcm_open(ctypes.byref(pcm), name.encode(), _SND_CAPTURE, _SND_NONBLOCK))
        if code >= 0:
            lib.snd_pcm_close(pcm)
    if code >= 0 or -code == errno.ENOENT:
        return None
    why = lib.snd_strerror(code).decode(errors="replace")
    hint = " (another program is using it?)" if -code == errno.EBUSY else ""
    return f"ALSA cannot open {name!r} for capture: {why}{hint}"


@functools.cache
def _libasound() -> Any:
    lib = ctypes.CDLL("libasound.so.2")
    lib.snd_strerror.restype = ctypes.c_char_p
    lib.snd_pcm_open.argtypes = [
        ctypes.POINTER(ctypes.c_void_p),
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_int,
    ]
    lib.snd_pcm_close.argtypes = [ctypes.c_void_p]
    lib.snd_strerror.argtypes = [ctypes.c_int]
    return lib


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
