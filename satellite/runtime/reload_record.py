"""How `systemctl reload` waits for the new configuration: a record of reloads, and its reader.

systemd 252 (Debian 12, Raspberry Pi OS) has no Type=notify-reload, and with a plain
`kill -HUP` as ExecReload `systemctl reload` returns as soon as the signal is sent, before
the daemon has even read the file. So ExecReload runs `satellite reload`, which sends SIGHUP
and waits until the daemon records that a reload which started after the signal completed.
The daemon writes the record (in its RuntimeDirectory) after READY=1.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from satellite.errors import SatelliteError

RECORD_NAME = "reload"


@dataclass(frozen=True)
class ReloadRecord:
    """Reloads begun and ended since the daemon started, and how the last one ended."""

    started: int = 0
    completed: int = 0
    outcome: str = ""

    @property
    def ok(self) -> bool:
        """Whether the last completed reload applied the configuration."""
        return self.outcome.startswith("ok")

    def write(self, path: Path) -> None:
        """Replace the record atomically (a reader never sees half of it)."""
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(f"{self.started} {self.completed} {self.outcome}\n", encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def read(cls, path: Path) -> ReloadRecord:
        """The record at `path`; an empty one when there is none yet."""
        try:
            started, completed, outcome = path.read_text(encoding="utf-8").split(" ", 2)
            return cls(int(started), int(completed), outcome.strip())
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            raise SatelliteError(f"unreadable reload record {path}: {exc}") from exc


def request_reload(
    pid: int,
    record: Path,
    *,
    timeout: float,
    poll_s: float = 0.05,
    clock: Callable[[], float] = time.monotonic,
) -> ReloadRecord:
    """SIGHUP `pid` and wait until a reload begun after it completed; its record.

    Any reload that starts after the record was first read reads the configuration file as
    it is now, so it is the one this request waits for. SatelliteError after `timeout`.
    """
    before = ReloadRecord.read(record)
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        raise SatelliteError(f"cannot signal the satellite (pid {pid}): {exc}") from exc
    deadline = clock() + timeout
    while clock() < deadline:
        now = ReloadRecord.read(record)
        if now.completed > before.started:
            return now
        time.sleep(poll_s)  # a file written at most a few times a minute: polling is enough
    raise SatelliteError(f"the satellite (pid {pid}) did not finish reloading in {timeout:g} s")
