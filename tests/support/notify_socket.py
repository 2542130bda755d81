"""A test-owned NOTIFY_SOCKET: receives the real sd_notify datagrams of a process under test."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Notification:
    """One sd_notify line (e.g. "READY=1") and when it arrived (monotonic)."""

    line: str
    at: float


class NotifySocket:
    """AF_UNIX datagram socket at `path`; a thread records every line it receives."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.2)
        self._received: list[Notification] = []
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notify-socket", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            now = time.monotonic()
            with self._changed:
                for line in data.decode(errors="replace").splitlines():
                    self._received.append(Notification(line, now))
                self._changed.notify_all()

    def lines(self) -> list[Notification]:
        """Everything so far, in arrival order."""
        with self._changed:
            return list(self._received)

    def wait_for(
        self, predicate: Callable[[Notification], bool], timeout: float, *, after: float = 0.0
    ) -> Notification | None:
        """The first notification arriving after `after` (monotonic) that matches, or None."""

        def found() -> Notification | None:
            return next((n for n in self._received if n.at > after and predicate(n)), None)

        with self._changed:
            self._changed.wait_for(lambda: found() is not None, timeout)
            return found()

    def close(self) -> None:
        """Stop the reader and remove the socket; idempotent."""
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> NotifySocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
