"""Signs of an unwell capture device: stale audio too fast, ALSA's own refusal, scan noise."""

from __future__ import annotations

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
    """Tells a live microphone from one that hands back stale audio at once, and both from a
    stall of our own process.

    alsa-lib's file plugin returns instantly, forever, once its FIFO writer is gone (no error);
    other dead devices can behave alike. A live device cannot run ahead of the clock by more
    than the audio it had buffered, so the check keeps a balance in seconds: the wall-clock
    time between reads minus the audio they returned. A dead device drives it below
    `-slack_s` within a few reads; a live one's own buffer (PortAudio asks for 4 periods,
    320 ms here) stays above that.

    A stall of the whole process (SIGSTOP, swapping, a long pause) is one long gap between two
    reads and then a burst: the backlog the device kept meanwhile, which cannot hold more
    audio than the gap lasted. The gap is credited (up to `max_stall_s`), so the burst is paid
    for and is no fault; a device that died during the stall is still caught once the
    credit is spent. The balance decays towards zero (time constant `decay_s`), so neither
    the credit of an old stall nor the drift of the device's clock against ours adds up.
    """

    def __init__(
        self,
        chunk_s: float,
        *,
        opened_at: float,
        slack_s: float = 0.5,
        max_stall_s: float = 10.0,
        decay_s: float = 60.0,
        settle_s: float = 1.0,
    ) -> None:
        self.chunk_s = chunk_s
        self.slack_s = slack_s
        self.max_stall_s = max_stall_s
        self.decay_s = decay_s
        self.settle_s = settle_s
        self.balance = 0.0
        self.audio_s = 0.0
        self.gap_s = 0.0  # the time between the last read and the one before
        self._last = opened_at  # a device starts empty: the first read waits a whole chunk

    def add(self, at: float) -> float:
        """Record a read of one chunk that returned at `at` (on the clock of `opened_at`); how
        many seconds of audio the device has delivered ahead of the clock (0: it keeps pace)."""
        gap = self.gap_s = max(0.0, at - self._last)
        self._last = at
        kept = self.balance * math.exp(-gap / self.decay_s)
        self.balance = min(kept + gap, self.max_stall_s) - self.chunk_s
        self.audio_s += self.chunk_s
        return max(0.0, -self.balance)

    def too_fast(self, ahead_s: float) -> bool:
        """Whether being `ahead_s` ahead of the clock means the device is not live."""
        return ahead_s > self.slack_s

    @property
    def settled(self) -> bool:
        """Enough audio read at pace (`settle_s`) to call a reopened device recovered."""
        return self.audio_s >= self.settle_s


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
