"""systemd integration: sd_notify (READY, STATUS, WATCHDOG, RELOADING, STOPPING)."""

from __future__ import annotations

import importlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

Sender = Callable[[str], object]


def _journal_notify(message: str) -> object:
    # By name: mypy would take the repo's systemd/ unit folder for the `systemd` package.
    daemon = importlib.import_module("systemd.daemon")
    return daemon.notify(message)


class Notifier:
    """Sends sd_notify messages when started by systemd; a no-op otherwise."""

    def __init__(self, *, enabled: bool, watchdog_usec: int | None, send: Sender = _journal_notify):
        self.enabled = enabled
        self.watchdog_usec = watchdog_usec if enabled else None
        self._send = send
        self._status = ""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], send: Sender = _journal_notify) -> Notifier:
        """From NOTIFY_SOCKET / WATCHDOG_USEC / WATCHDOG_PID as systemd sets them."""
        return cls(
            enabled=bool(environ.get("NOTIFY_SOCKET")),
            watchdog_usec=_watchdog_usec(environ),
            send=send,
        )

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to ping: half the watchdog timeout, or None without a watchdog."""
        return None if self.watchdog_usec is None else self.watchdog_usec / 2e6

    def ready(self) -> None:
        """The microphone is open and the models are loaded."""
        self._notify("READY=1")

    def reloading(self) -> None:
        """A configuration reload (SIGHUP) began; `ready()` ends it.

        MONOTONIC_USEC tells systemd (253 and later) that this reload began after the one it
        asked for, so `systemctl reload` waits for the READY=1 that ends it.
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._notify(f"RELOADING=1\nMONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        """A clean shutdown began."""
        self._notify("STOPPING=1")

    def watchdog(self) -> None:
        """The pipeline is alive."""
        self._notify("WATCHDOG=1")

    def status(self, text: str) -> None:
        """A human status line (shown by `systemctl status`); sent only when it changes."""
        if text != self._status:
            self._status = text
            self._notify(f"STATUS={text}")

    def _notify(self, message: str) -> None:
        if not self.enabled:
            return
        try:
            self._send(message)
        except OSError:
            log.warning("sd_notify %s failed", message.split("=", maxsplit=1)[0], exc_info=True)


def _watchdog_usec(environ: Mapping[str, str]) -> int | None:
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = environ.get("WATCHDOG_PID")
    if pid is not None and pid.isdigit() and int(pid) != os.getpid():
        return None
    return usec if usec > 0 else None


@dataclass(frozen=True)
class Liveness:
    """What the watchdog looks at: frames through the pipeline, and the capture thread's
    heartbeat (it beats on every read and about once a second while retrying a faulty mic)."""

    frames: int
    heartbeat: int
    mic_faulted: bool


class WatchdogGate:
    """Pings only while the satellite provably makes progress.

    With a working microphone that means new frames through the pipeline since the last ping:
    a hung read, a dead pipeline thread or a wedged queue all stop the count, so they stop
    the pings and systemd restarts the service. While the microphone is known to be faulty
    the capture thread's retry heartbeat counts instead, so a missing mic that is being
    retried is not "hung" and needs no restart.
    """

    def __init__(self) -> None:
        self._last: Liveness | None = None

    def should_ping(self, now: Liveness) -> bool:
        """Whether to send WATCHDOG=1 now."""
        last, self._last = self._last, now
        if last is None:
            return now.frames > 0 or now.mic_faulted
        if now.frames > last.frames:
            return True
        return now.mic_faulted and now.heartbeat > last.heartbeat


@dataclass(frozen=True)
class StatusLine:
    """What STATUS= says (`systemctl status`): one human line about the room's satellite."""

    room_id: str
    muted: bool
    mic: str  # the device's name
    mic_rate: int
    mic_fault: str | None
    broker: str  # host:port
    connected: bool
    last_wake: float | None  # Unix time, None: not since the start
    accessory_fault: str | None

    def __str__(self) -> str:
        muted = " (muted)" if self.muted else ""
        mic = f"mic {self.mic!r} at {self.mic_rate} Hz"
        if self.mic_fault is not None:
            mic = f"mic {self.mic!r} FAULT ({self.mic_fault})"
        broker = "connected" if self.connected else "connecting"
        wake = "never"
        if self.last_wake is not None:
            wake = time.strftime("%H:%M:%S", time.localtime(self.last_wake))
        leds = f"; LEDs/button FAULT ({self.accessory_fault})" if self.accessory_fault else ""
        return (
            f"room {self.room_id}{muted}; {mic}; "
            f"broker {self.broker} {broker}; last wake {wake}{leds}"
        )
