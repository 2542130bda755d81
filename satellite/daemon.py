"""The main thread of `satellite run`: signals, sd_notify, the watchdog, and config reload."""

from __future__ import annotations

import logging
import queue
import signal
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from satellite.app import Satellite
from satellite.config import Settings, load_settings
from satellite.errors import SatelliteError
from satellite.systemd import Notifier, WatchdogGate

log = logging.getLogger(__name__)

# Without a systemd watchdog the main loop still wakes this often to refresh STATUS=.
_STATUS_INTERVAL_S = 2.0

SatelliteFactory = Callable[[Settings], Satellite]


class Daemon:
    """Runs one Satellite; SIGTERM/SIGINT stop it, SIGHUP re-reads the config."""

    def __init__(
        self,
        *,
        config_path: Path,
        settings: Settings,
        notifier: Notifier,
        make_satellite: SatelliteFactory = Satellite,
    ) -> None:
        self.config_path = config_path
        self.settings = settings
        self.notifier = notifier
        self.make_satellite = make_satellite
        # Signal handlers run on the main thread between bytecodes; they only enqueue.
        self._signals: queue.SimpleQueue[int] = queue.SimpleQueue()

    def install_signal_handlers(self) -> None:
        """Route SIGTERM, SIGINT and SIGHUP into the main loop."""
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.put(signum)

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; the exit status (0 after a clean stop)."""
        satellite = self.make_satellite(self.settings)
        try:
            satellite.start()
            self.notifier.ready()
            satellite = self._loop(satellite)
        finally:
            self.notifier.stopping()
            satellite.close()
        log.info("stopped")
        return 0

    def _loop(self, satellite: Satellite) -> Satellite:
        gate = WatchdogGate()
        interval = self.notifier.watchdog_interval_s or _STATUS_INTERVAL_S
        while True:
            self._ping(satellite, gate)
            try:
                signum = self._signals.get(timeout=interval)
            except queue.Empty:
                continue
            if signum == signal.SIGHUP:
                satellite, gate = self._reload(satellite), WatchdogGate()
            else:
                log.info("stopping on %s", signal.Signals(signum).name)
                return satellite

    def _ping(self, satellite: Satellite, gate: WatchdogGate) -> None:
        if self.notifier.watchdog_usec is not None and gate.should_ping(satellite.liveness()):
            self.notifier.watchdog()
        self.notifier.status(satellite.status_line())

    def _reload(self, current: Satellite) -> Satellite:
        self.notifier.reloading()
        try:
            settings = load_settings(self.config_path)
            replacement = self.make_satellite(settings)  # loads models; opens no device yet
        except SatelliteError as exc:
            log.error("reload: keeping the running configuration: %s", exc)
            self.notifier.ready()
            return current
        log.info("reload: applying %s", self.config_path)
        current.close()
        try:
            replacement.start()
        except SatelliteError as exc:
            log.error("reload: the new configuration does not start (%s); restoring", exc)
            replacement.close()
            replacement = self.make_satellite(self.settings)
            replacement.start()
        else:
            self.settings = settings
        self.notifier.ready()
        return replacement
