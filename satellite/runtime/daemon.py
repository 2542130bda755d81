"""The main thread of `satellite run`: signals, sd_notify, the watchdog, and config reload."""

from __future__ import annotations

import logging
import queue
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from satellite.config import Settings, load_settings
from satellite.errors import SatelliteError
from satellite.runtime.reload_record import ReloadRecord
from satellite.runtime.satellite import Satellite
from satellite.runtime.systemd import Notifier, WatchdogGate

log = logging.getLogger(__name__)

# Without a systemd watchdog the main loop still wakes this often to refresh STATUS=.
_STATUS_INTERVAL_S = 2.0

SatelliteFactory = Callable[[Settings], Satellite]


class Daemon:
    """Runs one Satellite; SIGTERM/SIGINT stop it, SIGHUP re-reads the config.

    The main thread only waits for signals and feeds the watchdog: a reload runs on its own
    thread (`Reloader`), so the pings go on while new models load.
    """

    def __init__(
        self,
        *,
        config_path: Path,
        settings: Settings,
        notifier: Notifier,
        make_satellite: SatelliteFactory = Satellite,
        reload_record: Path | None = None,
    ) -> None:
        self.config_path = config_path
        self.settings = settings
        self.notifier = notifier
        self.make_satellite = make_satellite
        self.reload_record = reload_record
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
            self._loop(satellite)
        finally:
            self.notifier.stopping()
            satellite.close()
        log.info("stopped")
        return 0

    def _loop(self, satellite: Satellite) -> None:
        gate = WatchdogGate()
        reloader = Reloader(
            satellite,
            config_path=self.config_path,
            notifier=self.notifier,
            record=self.reload_record,
        )
        interval = self.notifier.watchdog_interval_s or _STATUS_INTERVAL_S
        while True:
            self._ping(satellite, gate)
            try:
                signum = self._signals.get(timeout=interval)
            except queue.Empty:
                continue
            if signum == signal.SIGHUP:
                reloader.request()
            else:
                log.info("stopping on %s", signal.Signals(signum).name)
                return

    def _ping(self, satellite: Satellite, gate: WatchdogGate) -> None:
        if self.notifier.watchdog_usec is not None and gate.should_ping(satellite.liveness()):
            self.notifier.watchdog()
        self.notifier.status(satellite.status_line())


class Reloader:
    """Applies SIGHUPs to the running satellite on its own thread, one reload at a time.

    Signals that arrive during a reload make one more reload after it (a burst of 50 costs
    two), which reads the file as it is then. Each reload says RELOADING=1, then READY=1 once
    the new configuration is in effect (or the old one is kept), then updates the record that
    `satellite reload` waits for.
    """

    def __init__(
        self,
        satellite: Satellite,
        *,
        config_path: Path,
        notifier: Notifier,
        record: Path | None = None,
    ) -> None:
        self.satellite = satellite
        self.config_path = config_path
        self.notifier = notifier
        self.record_path = record
        self.record = ReloadRecord()
        self._wanted = threading.Event()
        self._thread: threading.Thread | None = None

    def request(self) -> None:
        """Reload soon (from the main thread); never waits."""
        self._wanted.set()
        if self._thread is None:
            # A daemon thread: a stop during a model load does not wait for the load.
            self._thread = threading.Thread(target=self._run, name="reload", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            self._reload()

    def _reload(self) -> None:
        self._note(ReloadRecord(self.record.started + 1, self.record.completed, "reloading"))
        self.notifier.reloading()
        try:
            settings = load_settings(self.config_path)
            log.info("reload: applying %s", self.config_path)
            plan = self.satellite.reload(settings)
            outcome = "ok: " + (", ".join(plan.changes) or "nothing changed")
            log.info("reload: %s", outcome)
        except SatelliteError as exc:
            log.error("reload: keeping the running configuration: %s", exc)
            outcome = f"failed: {exc}"
        except Exception as exc:  # the running satellite must outlive any reload
            log.exception("reload: failed; keeping the running configuration")
            outcome = f"failed: {exc.__class__.__name__}: {exc}"
        self.notifier.ready()
        self._note(ReloadRecord(self.record.started, self.record.started, outcome))

    def _note(self, record: ReloadRecord) -> None:
        self.record = record
        if self.record_path is None:
            return
        try:
            record.write(self.record_path)
        except OSError as exc:
            log.warning("cannot write the reload record %s: %s", self.record_path, exc)
