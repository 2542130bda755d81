"""`satellite listen`: a live terminal view of the level, wake scores, gate and transcripts,
and, when the broker can be reached, the claims and results of the arbitration group."""

from __future__ import annotations

import argparse
import contextlib
import logging
import queue
import signal
import sys
import termios
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.logging import RichHandler

from satellite.audio.capture import Capture
from satellite.audio.frame_source import FrameProcessor, FrameSource
from satellite.audio.gate import EnergyGate
from satellite.audio.health import native_stderr_silenced
from satellite.commands.listen_view import SILENT, GateView, ListenView, MicStatus, frame_level
from satellite.config import Settings, load_settings
from satellite.core.frames import Frame
from satellite.core.ids import new_id
from satellite.core.session import SessionMachine
from satellite.errors import SatelliteError
from satellite.mqtt.inbound import ClaimReceived, ResultReceived, parse_inbound
from satellite.mqtt.link import MqttLink
from satellite.mqtt.outbound import build_outbox
from satellite.runtime.engines import build_gate, build_machine, load_engines

REFRESH_PER_S = 10
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `satellite listen`."""
    parser.add_argument("--config", type=Path, required=True, help="the room's TOML file")


class HouseholdFeed:
    """The group's claims and results from the broker, for the view; nothing is published.

    paho's network thread runs `_on_message` and `_on_connection`: they only update the view,
    which takes its own lock.
    """

    def __init__(self, settings: Settings, view: ListenView) -> None:
        self.view = view
        self.topics = build_outbox(settings).topics
        self.max_bytes = settings.mqtt.max_payload_bytes
        self.where = (
            f"group {settings.arbitration.group} on {settings.mqtt.host}:{settings.mqtt.port}"
        )
        filters = self.topics.household_topics()
        client = f"satellite-listen-{settings.room_id}-{settings.satellite_id}-{new_id()[:8]}"
        self.link = MqttLink(
            settings.mqtt,
            client_id=client,
            subscriptions=filters,
            on_message=self._on_message,
            on_connection_change=self._on_connection,
            logger=logging.getLogger(f"{__name__}.mqtt"),
        )

    def start(self) -> None:
        """Connect in the background; a login that cannot work is shown, not raised."""
        self.view.set_household(f"{self.where}: connecting…")
        try:
            self.link.start()
        except SatelliteError as exc:
            self.view.set_household(f"{self.where}: not shown ({exc})")

    def close(self) -> None:
        """Disconnect; idempotent."""
        self.link.close()

    def _on_connection(self, connected: bool) -> None:
        state = "claims and results" if connected else "broker not reached, retrying"
        self.view.set_household(f"{self.where}: {state}")

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        told = parse_inbound(topic, payload, topics=self.topics, max_bytes=self.max_bytes)
        if isinstance(told, ClaimReceived | ResultReceived):
            self.view.heard_household(told)


class ScoresTapped:
    """The wake detector's tap for the view: the scores of the frame just scored, if any."""

    def __init__(self) -> None:
        self._last: dict[str, float] | None = None

    def __call__(self, scores: Mapping[str, float]) -> None:
        # With the gate, a frame that opens it scores the held-back frames first: the last wins.
        self._last = dict(scores)

    def take(self) -> dict[str, float] | None:
        """The scores tapped since the last take (None: the frame was not scored)."""
        last, self._last = self._last, None
        return last


class Listener:
    """The frame loop (`FrameSource`) on the caller's thread: every frame is shown on the view
    with its level and the wake scores the detector tapped; it publishes nothing."""

    def __init__(
        self,
        *,
        machine: SessionMachine,
        view: ListenView,
        scores: ScoresTapped,
        gate: EnergyGate | None = None,
    ) -> None:
        self.machine = machine
        self.view = view
        self.scores = scores
        self.gate = gate
        self.processor = FrameProcessor()
        self._faults: queue.SimpleQueue[str | None] = queue.SimpleQueue()

    def on_fault(self, reason: str | None) -> None:
        """Capture's fault callback: runs on the capture thread, so it only queues."""
        self._faults.put(reason)

    def run_until(self, capture: Capture, stop: threading.Event) -> None:
        """Process what `capture` delivers until `stop` is set (checked every 0.1 s)."""
        source = FrameSource(capture)
        source.run(self._process, stop, between_reads=lambda: self._between_reads(capture))

    def _between_reads(self, capture: Capture) -> None:
        self.view.set_mic(_mic_status(capture))
        while True:
            try:
                reason = self._faults.get_nowait()
            except queue.Empty:
                return
            self.view.observe(SILENT, None, self.machine.set_fault(reason))

    def _process(self, frame: Frame) -> None:
        events = self.processor.process(self.machine, frame)
        self.view.observe(frame_level(frame), self.scores.take(), events, self._gate_view())

    def _gate_view(self) -> GateView | None:
        gate = self.gate
        if gate is None:
            return None
        return GateView(gate.open, gate.floor_dbfs, gate.floor_dbfs + gate.margin_db)


def _mic_status(capture: Capture) -> MicStatus:
    name = capture.device.name if capture.device else capture.settings.device
    return MicStatus(name, capture.rate, capture.fault, capture.dropped)


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Show the live view on `out` until Ctrl-C (or SIGTERM/SIGHUP), then exit 0.

    Ctrl-C is how this command is meant to end, not an interruption, hence status 0.
    """
    settings = load_settings(args.config)
    console = Console(file=out)
    stop = threading.Event()
    with _stop_on_signals(stop):
        console.print(f"loading models from {settings.models.dir} …")
        scores, gate = ScoresTapped(), build_gate(settings)
        # Vosk prints a screen of LOG lines on stderr while loading; failures still raise.
        with native_stderr_silenced():
            engines = load_engines(settings, on_scores=scores)
            machine = build_machine(settings, engines, gate=gate)
        if stop.is_set():
            return 0
        view = _view(settings)
        listener = Listener(machine=machine, view=view, scores=scores, gate=gate)
        live = Live(view, console=console, refresh_per_second=REFRESH_PER_S)
        with (
            _logs_to(console),
            _keys_not_echoed(sys.stdin),
            _household_shown(settings, view),
            Capture(settings.audio, on_fault=listener.on_fault) as capture,
            live,
        ):
            listener.run_until(capture, stop)
    return 0


@contextlib.contextmanager
def _household_shown(settings: Settings, view: ListenView) -> Iterator[None]:
    """The group's claims and results on the view while it is shown (arbitration on)."""
    if not settings.arbitration.enabled:
        view.set_household("arbitration off: this satellite never waits for others")
        yield
        return
    feed = HouseholdFeed(settings, view)
    feed.start()
    try:
        yield
    finally:
        feed.close()


def _view(settings: Settings) -> ListenView:
    title = f"satellite listen · room {settings.room_id} · {settings.satellite_id}"
    wake = settings.wake
    return ListenView(title=title, models=wake.models, threshold=wake.threshold)


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Turn Ctrl-C, SIGTERM and SIGHUP into `stop`: no KeyboardInterrupt mid-frame, no
    traceback, and the `with` blocks close the view (restoring the cursor) and the device."""
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _logs_to(console: Console) -> Iterator[None]:
    """Log lines go above the live view while it is shown: a plain stderr handler would write
    through rich's redraws and leave the screen torn."""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers[:] = [RichHandler(console=console, show_path=False)]
    try:
        yield
    finally:
        root.handlers[:] = saved


@contextlib.contextmanager
def _keys_not_echoed(stdin: TextIO) -> Iterator[None]:
    """Keys typed at the terminal (Ctrl-C's "^C" too) are not echoed while the view is shown:
    an echo moves the cursor under rich, which then redraws one line too low."""
    if not stdin.isatty():
        yield
        return
    fd = stdin.fileno()
    saved = termios.tcgetattr(fd)
    quiet = termios.tcgetattr(fd)
    quiet[3] &= ~termios.ECHO  # lflag; ISIG stays, so Ctrl-C still signals
    termios.tcsetattr(fd, termios.TCSANOW, quiet)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)
