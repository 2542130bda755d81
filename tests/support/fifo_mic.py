"""The fake microphone: an ALSA `file` PCM whose infile is a FIFO we fill in real time.

A process run with `FifoMic.env` (HOME pointing at our `.asoundrc`) sees a capture device
named `name` in PortAudio's list. Reads from it block on the FIFO, so they are paced by our
writer thread: one chunk of `chunk_ms` every `chunk_ms`, fed audio first, silence (or the
`idle` audio) otherwise.

Two rules follow from alsa-lib's file plugin (1.2.8), which does ONE read(2) per period and
pads a short read with zeros without telling anyone:
- the reader's read size must divide the chunk (the satellite reads 80 ms = one chunk), and
- chunks are written whole and atomically, never split.

And two from the FIFO itself:
- once the writer has closed, a reader's reads return at once, forever, repeating stale audio
  (EOF is not an error for the plugin); a new writer on the same FIFO makes them block again;
- opening the PCM while the FIFO exists but nobody writes hangs in open(2) (PortAudio's device
  scan too), where a missing FIFO fails at once (ENOENT): `unplug()` removes it for that reason.
"""

from __future__ import annotations

import array
import bisect
import fcntl
import os
import stat
import termios
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from tests.support import tiers

ASOUNDRC = """\
pcm.{name} {{
    type file
    slave.pcm "null"
    file "/dev/null"
    infile "{fifo}"
    format "raw"
    hint {{
        show on
        description "{name}"
    }}
}}
"""


def alsa_env(home: Path) -> dict[str, str]:
    """os.environ plus HOME (for ~/.asoundrc); JACK must not try to start a server."""
    return {**os.environ, "HOME": str(home), "JACK_NO_START_SERVER": "1"}


def unprivileged(argv: list[str]) -> list[str]:
    """`argv` run without CAP_SYS_ADMIN when we are root, so a held device refuses it too."""
    if os.geteuid() != 0:
        return argv
    return ["setpriv", "--bounding-set=-sys_admin", *argv]


@dataclass(frozen=True)
class WrittenChunk:
    """Fed frames [first, first + frames) became readable at monotonic time `at`."""

    first: int
    frames: int
    at: float


class FifoMic:
    """A paced fake microphone for processes run with `env`; start() before they open ALSA."""

    def __init__(
        self,
        workdir: Path,
        *,
        rate: int = 16000,
        channels: int = 1,
        chunk_ms: int = 80,
        backlog_chunks: int = 4,
        name: str = "fifomic",
        idle: npt.NDArray[np.int16] | None = None,
    ) -> None:
        self.rate = rate
        self.channels = channels
        self.name = name
        self.chunk_frames = rate * chunk_ms // 1000
        self.chunk_seconds = self.chunk_frames / rate
        self.frame_bytes = 2 * channels
        self.home = workdir / "home"
        self.fifo_path = workdir / f"{name}.fifo"
        self._chunk_bytes = self.chunk_frames * self.frame_bytes
        # Beyond this much unread audio the reader is not reading: hold back, like an overrun.
        self._backlog_limit = backlog_chunks * self._chunk_bytes
        self._changed = threading.Condition()
        self._pending = bytearray()
        self._fed_bytes = 0
        self._written_bytes = 0
        self._chunks: list[WrittenChunk] = []
        self._paused = threading.Event()
        self._stopping = threading.Event()
        self._fd = -1
        self._thread: threading.Thread | None = None
        self._held: tuple[int, int] | None = None
        # What the microphone hears when nothing is fed: digital silence unless `idle` (looped)
        # says otherwise. A real room is never all zeros, and the satellite's noise floor
        # would follow zeros down (its gate then stays open ~5 s on the room's tone after).
        self._idle = b"" if idle is None else np.ascontiguousarray(idle, dtype="<i2").tobytes()
        if len(self._idle) % self.frame_bytes:
            raise ValueError("idle audio must be whole frames")
        self._idle_at = 0
        self._write_config(workdir)

    @property
    def env(self) -> dict[str, str]:
        """os.environ plus HOME (for ~/.asoundrc); JACK must not try to start a server."""
        return alsa_env(self.home)

    def start(self) -> None:
        """Open the FIFO and start writing (silence until fed)."""
        tiers.require("integration", "feeds the FIFO ALSA microphone")
        if self._thread is not None:
            return
        # O_RDWR (Linux): never blocks waiting for a reader, readers never block in open
        # while we live, and readers never see EOF while we merely pause.
        self._fd = os.open(self.fifo_path, os.O_RDWR | os.O_NONBLOCK)
        pipe_size = max(65536, 2 * (self._backlog_limit + self._chunk_bytes))
        fcntl.fcntl(self._fd, fcntl.F_SETPIPE_SZ, pipe_size)
        self._thread = threading.Thread(target=self._run, name="fifo-mic", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop writing and close the FIFO (readers then see EOF); idempotent."""
        self.release()
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def unplug(self) -> None:
        """The device disappears: the writer closes and the FIFO is removed, so an open stream
        reads stale audio at once and a new open fails (ENOENT). A new FifoMic on the same
        `workdir` plugs it back in."""
        self.close()
        self.fifo_path.unlink(missing_ok=True)

    def hold(self) -> None:
        """Make the device busy, as when another program has it: opening it fails with EBUSY.

        The FIFO steps aside and its path leads to a pseudo-terminal in exclusive mode
        (TIOCEXCL), which refuses every other open(2) by a process without CAP_SYS_ADMIN: run
        the process under test through `unprivileged()`. Our writer keeps its FIFO.
        """
        master, follower = os.openpty()
        fcntl.ioctl(follower, termios.TIOCEXCL)
        os.rename(self.fifo_path, self._aside_path)
        os.symlink(os.ttyname(follower), self.fifo_path)
        self._held = (master, follower)

    def release(self) -> None:
        """The other program lets go: the path leads to our FIFO again."""
        if self._held is None:
            return
        os.replace(self._aside_path, self.fifo_path)
        for fd in self._held:
            os.close(fd)
        self._held = None

    @property
    def _aside_path(self) -> Path:
        return self.fifo_path.with_name(self.fifo_path.name + ".aside")

    def feed(self, samples: npt.NDArray[np.int16]) -> int:
        """Queue int16 audio (interleaved or shape (n, channels)); the index of its first frame."""
        data = np.ascontiguousarray(samples, dtype="<i2").tobytes()
        if len(data) % self.frame_bytes:
            raise ValueError(
                f"{len(data) // 2} samples is not whole {self.channels}-channel frames"
            )
        with self._changed:
            first = self._fed_bytes // self.frame_bytes
            self._pending += data
            self._fed_bytes += len(data)
            return first

    def wait_fed(self, timeout: float) -> None:
        """Return once everything fed so far has been written to the FIFO."""
        with self._changed:
            target = self._fed_bytes
            if not self._changed.wait_for(lambda: self._written_bytes >= target, timeout):
                left = (target - self._written_bytes) / self.frame_bytes / self.rate
                raise AssertionError(
                    f"fed audio not written within {timeout} s ({left:.2f} s left)"
                )

    def pause_writing(self) -> None:
        """Write nothing at all (FIFO stays open): a reader's read then hangs."""
        self._paused.set()

    def resume_writing(self) -> None:
        """Go back to writing a chunk every chunk period."""
        self._paused.clear()

    def written_at(self, frame: int) -> float:
        """The monotonic time fed frame `frame` became readable (AssertionError if not yet)."""
        with self._changed:
            i = bisect.bisect_right(self._chunks, frame, key=lambda c: c.first) - 1
            if i < 0 or frame >= self._chunks[i].first + self._chunks[i].frames:
                raise AssertionError(f"fed frame {frame} not written yet")
            return self._chunks[i].at

    @property
    def written_chunks(self) -> list[WrittenChunk]:
        """Every chunk that carried fed audio, in order."""
        with self._changed:
            return list(self._chunks)

    def __enter__(self) -> FifoMic:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write_config(self, workdir: Path) -> None:
        if '"' in str(workdir) or "\\" in str(workdir):
            raise ValueError(f"{workdir} cannot be quoted in an ALSA config")
        self.home.mkdir(parents=True, exist_ok=True)
        # A FIFO left by an earlier FifoMic on this workdir is reused: the same device returns.
        if not (self.fifo_path.exists() and stat.S_ISFIFO(self.fifo_path.stat().st_mode)):
            os.mkfifo(self.fifo_path)
        asoundrc = ASOUNDRC.format(name=self.name, fifo=self.fifo_path)
        (self.home / ".asoundrc").write_text(asoundrc)

    def _run(self) -> None:
        deadline = time.monotonic()
        while not self._stopping.wait(max(0.0, deadline - time.monotonic())):
            if not self._paused.is_set() and self._unread_bytes() < self._backlog_limit:
                self._write_chunk()
            deadline = self._next_deadline(deadline)

    def _next_deadline(self, previous: float) -> float:
        following = previous + self.chunk_seconds
        now = time.monotonic()
        # After a stall, start again from now instead of bursting to catch up.
        return following if following > now - self.chunk_seconds else now

    def _unread_bytes(self) -> int:
        count = array.array("i", [0])
        fcntl.ioctl(self._fd, termios.FIONREAD, count)
        return count[0]

    def _filler(self, size: int) -> bytes:
        """`size` bytes of the idle audio (looped from where it stopped), or zeros."""
        if not self._idle:
            return bytes(size)
        out = bytearray()
        while len(out) < size:
            part = self._idle[self._idle_at : self._idle_at + size - len(out)]
            out += part
            self._idle_at = (self._idle_at + len(part)) % len(self._idle)
        return bytes(out)

    def _write_chunk(self) -> None:
        with self._changed:
            fed = bytes(self._pending[: self._chunk_bytes])
        chunk = fed + self._filler(self._chunk_bytes - len(fed))
        written = os.write(self._fd, chunk)  # fits: the pipe holds more than backlog + chunk
        at = time.monotonic()
        if written != len(chunk):
            raise OSError(f"short write to {self.fifo_path}: {written} of {len(chunk)} bytes")
        with self._changed:
            del self._pending[: len(fed)]
            if fed:
                first = self._written_bytes // self.frame_bytes
                self._chunks.append(WrittenChunk(first, len(fed) // self.frame_bytes, at))
            self._written_bytes += len(fed)
            self._changed.notify_all()
