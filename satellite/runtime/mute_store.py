"""Small persistent state (mute) in the state directory: written atomically, read fail-closed."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

_MAX_BYTES = 4096  # `{"muted": true}` is 15 bytes: anything much bigger is not ours


def mute_file(state_dir: Path, room_id: str) -> Path:
    """Where the room's mute state lives."""
    return state_dir / f"{room_id}.mute.json"


def state_dir_fix(state_dir: Path, exc: OSError) -> str:
    """How to make `state_dir` writable again after `exc`."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"free space on the file system of {state_dir} (`df -h {state_dir}`)"
    if exc.errno == errno.EROFS:
        return f"{state_dir} is on a read-only file system: remount it read-write"
    return (
        f"give the satellite's user write access to {state_dir} "
        "(the unit's StateDirectory= creates it with the right owner)"
    )


class MuteStore:
    """Remembers whether the room's satellite is muted, across restarts, failing closed.

    A save is atomic and durable (temp file, fsync, rename, fsync of the directory) and leaves
    no temp file behind when it fails. A file that exists but cannot be read as our state
    (truncated by a power cut, wrong type, permission denied, not a file) loads as muted: the
    room was promised silence and may still expect it. `problem` says what is wrong, for
    status and `check`, until a save succeeds. `write` and `fsync` are os.write and os.fsync
    unless a test injects a failing one.
    """

    def __init__(
        self,
        path: Path,
        *,
        write: Callable[[int, bytes], int] = os.write,
        fsync: Callable[[int], None] = os.fsync,
    ) -> None:
        self.path = path
        self.problem: str | None = None
        self._write = write
        self._fsync = fsync

    def load(self) -> bool:
        """The saved mute state: False when none was saved, True when it cannot be read."""
        try:
            text = self._read()
        except FileNotFoundError:
            return False
        except (OSError, ValueError) as exc:
            return self._unreadable(str(exc))
        try:
            data = json.loads(text)
        except ValueError as exc:
            return self._unreadable(f"not JSON: {exc}")
        muted = data.get("muted") if isinstance(data, dict) else None
        if not isinstance(muted, bool):
            return self._unreadable(f'{text[:40]!r} is not {{"muted": true or false}}')
        return muted

    def save(self, muted: bool) -> None:
        """Write the state; a failure is logged and kept in `problem`, never raised (mute
        itself still works, until the next restart)."""
        try:
            self.write(json.dumps({"muted": muted}).encode())
        except OSError as exc:
            self.problem = f"cannot save the mute state in {self.path}: {exc.strerror or exc}"
            log.error("%s; %s", self.problem, state_dir_fix(self.path.parent, exc))
            return
        if self.problem is not None:
            log.info("mute state saved in %s again", self.path)
        self.problem = None

    def write(self, data: bytes) -> None:
        """Replace the file with `data` atomically and durably; OSError when it cannot."""
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            try:
                self._write_all(fd, data)
                self._fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._sync_directory(directory)

    def _write_all(self, fd: int, data: bytes) -> None:
        while data:
            data = data[self._write(fd, data) :]

    def _sync_directory(self, directory: Path) -> None:
        # The rename is durable only once the directory itself is on disk.
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            self._fsync(fd)
        finally:
            os.close(fd)

    def _read(self) -> str:
        # O_NONBLOCK: a FIFO in the file's place must not hang the start.
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ValueError("not a regular file")
            return os.read(fd, _MAX_BYTES).decode("utf-8")
        finally:
            os.close(fd)

    def _unreadable(self, why: str) -> bool:
        self.problem = f"mute state {self.path} is unreadable ({why}); started muted"
        log.warning(
            "mute state %s is unreadable (%s): starting MUTED, as it may have said; to clear "
            "it, unmute by command or the button (which rewrites it), or delete the file",
            self.path,
            why,
        )
        return True
