"""`satellite listen`: a live terminal view of the level, wake scores, gate and transcripts,
and, when the broker can be reached, the claims and results of the arbitration group."""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import queue
import signal
import sys
import termios
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
from rich.console import Console, RenderableType
from rich.live import Live
from rich.logging import RichHandler
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from satellite.audio.capture import Capture, FrameAssembler
from satellite.audio.gate import GatedDetector
from satellite.audio.health import native_stderr_silenced
from satellite.audio.wake import OwwDetector
from satellite.config import Settings, load_settings
from satellite.core.frames import Frame, amplitude_dbfs, frames_for
from satellite.core.ids import new_id
from satellite.core.session import (
    Event,
    Final,
    Idle,
    Interim,
    Listening,
    SessionMachine,
    WakeDetected,
)
from satellite.errors import SatelliteError
from satellite.mqtt.inbound import ClaimReceived, ResultReceived, parse_inbound
from satellite.mqtt.link import MqttLink
from satellite.mqtt.outbound import build_outbox
from satellite.runtime.engines import build_machine

REFRESH_PER_S = 10
FLOOR_DBFS = -60.0  # the left end of the level bar
BAR_WIDTH = 40
FINALS_SHOWN = 5
HOUSEHOLD_SHOWN = 6  # claims and results of the group
# A wake score lasts a frame or two: the bar also shows the highest of the last 2 s.
_HOLD_FRAMES = frames_for(2.0)
_CLIP_DBFS = -0.1
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `satellite listen`."""
    parser.add_argument("--config", type=Path, required=True, help="the room's TOML file")


@dataclass(frozen=True)
class Level:
    """Peak and RMS of one frame, in dBFS (-inf for digital silence)."""

    peak_dbfs: float
    rms_dbfs: float

    @property
    def clipping(self) -> bool:
        """Whether the frame reached full scale."""
        return self.peak_dbfs >= _CLIP_DBFS


SILENT = Level(-math.inf, -math.inf)


def frame_level(frame: Frame) -> Level:
    """The level of one frame of int16 samples."""
    if len(frame) == 0:
        return SILENT
    samples = frame.astype(np.float64)
    peak = float(np.max(np.abs(samples)))
    rms = float(np.sqrt(np.mean(samples * samples)))
    return Level(amplitude_dbfs(peak), amplitude_dbfs(rms))


@dataclass(frozen=True)
class GateView:
    """The silence gate after a frame: open or not, and the level that opens it."""

    open: bool
    floor_dbfs: float
    opens_at: float


@dataclass(frozen=True)
class MicStatus:
    """What the footer says about the microphone."""

    device: str
    rate: int
    fault: str | None
    dropped: int


@dataclass(frozen=True)
class Heard:
    """A final transcript, with the wall-clock time it arrived."""

    at: float
    text: str
    confidence: float


class ListenView:
    """What the screen shows: updated by the processing loop, rendered by rich's refresh thread."""

    def __init__(self, *, title: str, models: Sequence[str], threshold: float) -> None:
        self.title = title
        self.threshold = threshold
        self._lock = threading.Lock()
        self._level = SILENT
        self._scores = dict.fromkeys(models, 0.0)
        self._recent: dict[str, deque[float]] = {m: deque(maxlen=_HOLD_FRAMES) for m in models}
        self._listening_since: float | None = None
        self._last_wake: WakeDetected | None = None
        self._last_wake_at = 0.0  # wall time
        self._last_end = ""
        self._partial = ""
        self._finals: deque[Heard] = deque(maxlen=FINALS_SHOWN)
        self._frames = 0
        self._mic = MicStatus("", 0, None, 0)
        self._gate: GateView | None = None
        self._household_state = ""  # empty: no household row
        self._household: deque[Text] = deque(maxlen=HOUSEHOLD_SHOWN)

    def observe(
        self,
        level: Level,
        scores: dict[str, float] | None,
        events: list[Event],
        gate: GateView | None = None,
    ) -> None:
        """One processed frame: its level, the wake scores (None when not scored), its events."""
        with self._lock:
            self._frames += 1
            self._level = level
            self._gate = gate
            if scores is not None:
                self._scores = scores
                for name, score in scores.items():
                    self._recent.setdefault(name, deque(maxlen=_HOLD_FRAMES)).append(score)
            for event in events:
                self._apply(event)

    def set_mic(self, mic: MicStatus) -> None:
        """The microphone's device, rate, fault and drop count now."""
        with self._lock:
            self._mic = mic

    def set_household(self, state: str) -> None:
        """What the group row says: the group and whether the broker is reached."""
        with self._lock:
            self._household_state = state

    def heard_household(self, told: ClaimReceived | ResultReceived) -> None:
        """A claim or result of the group, shown with its arrival time."""
        row = _household_row(told, time.time())
        with self._lock:
            self._household.append(row)

    def _apply(self, event: Event) -> None:
        if isinstance(event, WakeDetected):
            self._last_wake, self._last_wake_at = event, time.time()
        elif isinstance(event, Listening):
            self._listening_since, self._partial = time.monotonic(), ""
        elif isinstance(event, Interim):
            self._partial = event.text
        elif isinstance(event, Final):
            transcript = event.transcript
            self._finals.append(Heard(time.time(), transcript.text, transcript.confidence))
        elif isinstance(event, Idle):
            self._listening_since, self._partial = None, ""
            self._last_end = event.reason.value

    def __rich__(self) -> RenderableType:
        with self._lock:
            grid = Table.grid(padding=(0, 1))
            grid.add_column(style="bold", min_width=8)
            grid.add_column()
            grid.add_row("level", self._level_row())
            for name in self._scores:
                grid.add_row("wake", self._wake_row(name))
            grid.add_row("gate", self._gate_row())
            grid.add_row("session", self._session_row())
            grid.add_row("partial", Text(self._partial or "…", style="italic"))
            for heard in self._finals:
                grid.add_row("final", _final_row(heard))
            if self._household_state:
                grid.add_row("group", Text(self._household_state))
                for row in self._household:
                    grid.add_row("", row)
            return Panel(grid, title=self.title, subtitle=self._footer(), title_align="left")

    def _level_row(self) -> Text:
        level = self._level
        rms, peak = _fraction(level.rms_dbfs), _fraction(level.peak_dbfs)
        filled, reach = round(BAR_WIDTH * rms), round(BAR_WIDTH * peak)
        bar = Text("█" * filled, style=_level_style(level.rms_dbfs))
        bar.append("▒" * (reach - filled), style="dim")
        bar.append("·" * (BAR_WIDTH - max(reach, filled)), style="dim")
        bar.append(f"  peak {_db(level.peak_dbfs)} dBFS  rms {_db(level.rms_dbfs)} dBFS")
        if level.clipping:
            bar.append("  CLIP", style="bold red")
        return bar

    def _wake_row(self, name: str) -> Text:
        score, held = self._scores.get(name, 0.0), max(self._recent.get(name) or [0.0])
        mark = min(BAR_WIDTH - 1, round(BAR_WIDTH * self.threshold))
        filled = round(BAR_WIDTH * min(1.0, score))
        above = held >= self.threshold
        row = Text(f"{name:<14} ")
        for i in range(BAR_WIDTH):
            if i == mark:
                row.append("│", style="bold yellow")
            else:
                row.append("█" if i < filled else "·", style="green" if above else "cyan")
        row.append(f"  {score:.2f}  peak {held:.2f}  threshold {self.threshold:.2f}")
        if above:
            row.append("  WAKE", style="bold green")
        return row

    def _gate_row(self) -> Text:
        energy = _db(self._level.rms_dbfs)
        gate = self._gate
        if gate is None:
            return Text(f"off (every frame goes to the wake model)  frame energy {energy} dBFS")
        row = Text("open  " if gate.open else "closed", style="green" if gate.open else "dim")
        row.append(f"  noise floor {gate.floor_dbfs:.1f} dBFS  opens at {gate.opens_at:.1f} dBFS")
        return row

    def _session_row(self) -> Text:
        if self._listening_since is not None:
            row = Text(f"listening {time.monotonic() - self._listening_since:4.1f} s", "bold green")
        else:
            row = Text("idle (wake word armed)" if self._mic.fault is None else "idle")
        wake = self._last_wake
        if wake is not None:
            row.append(
                f"  ·  last wake {wake.wake_word} {wake.score:.2f} at {_clock(self._last_wake_at)}"
                f", {wake.level_db:.1f} dB over the floor"
            )
        if self._last_end:
            row.append(f"  ·  last end: {self._last_end}")
        return row

    def _footer(self) -> Text:
        mic = self._mic
        device = f"mic {mic.device!r} {mic.rate} Hz" if mic.device else "mic opening…"
        if mic.fault is not None:
            return Text(f"{device} FAULT: {mic.fault}", style="bold red")
        return Text(f"{device} · frames {self._frames} · dropped {mic.dropped} · Ctrl-C quits")


def _final_row(heard: Heard) -> Text:
    row = Text(f"{_clock(heard.at)}  ")
    row.append(heard.text, style="bold")
    row.append(f"  ({heard.confidence:.2f})", style="dim")
    return row


def _household_row(told: ClaimReceived | ResultReceived, at: float) -> Text:
    message = told.message
    clock = time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at * 1000) % 1000:03d}"
    who = f"{message.room_id or '?'}/{message.satellite_id}"
    if isinstance(told, ClaimReceived):
        claim = told.message
        row = Text(f"{clock}  claim   {who}  {claim.wake_word or '?'} {claim.score:.2f}  ")
        row.append(f"{claim.level_db:.1f} dB", style="bold")
        return row
    result = told.message
    row = Text(f"{clock}  result  {who}  ")
    row.append(result.outcome, style="bold green" if result.outcome == "won" else "")
    row.append(f"  winner {result.winner}  ({len(result.claims)} claims)")
    return row


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


def _fraction(dbfs: float) -> float:
    return 0.0 if dbfs <= FLOOR_DBFS else min(1.0, (dbfs - FLOOR_DBFS) / -FLOOR_DBFS)


def _level_style(dbfs: float) -> str:
    return "red" if dbfs > -6 else "yellow" if dbfs > -20 else "green"


def _db(dbfs: float) -> str:
    return f"{dbfs:6.1f}" if math.isfinite(dbfs) else "  -inf"


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))


class Listener:
    """Capture queue -> 80 ms frames -> the session machine, every frame shown on the view.

    Like app.Pipeline, but on the caller's thread and with each frame's level and wake scores
    handed to the view; it publishes nothing.
    """

    def __init__(self, *, machine: SessionMachine, view: ListenView) -> None:
        self.machine = machine
        self.view = view
        self._faults: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._assembler: FrameAssembler | None = None
        self._generation = 0

    def on_fault(self, reason: str | None) -> None:
        """Capture's fault callback: runs on the capture thread, so it only queues."""
        self._faults.put(reason)

    def run_until(self, capture: Capture, stop: threading.Event) -> None:
        """Process what `capture` delivers until `stop` is set (checked every 0.1 s)."""
        while not stop.is_set():
            self._apply_faults()
            chunk = capture.read(timeout=0.1)
            self.view.set_mic(_mic_status(capture))
            if chunk is None:
                continue
            if self._assembler is None or self._generation != capture.generation:
                # The device was (re)opened, maybe at another rate: a fresh resampler.
                self._generation, self._assembler = capture.generation, _assembler(capture)
            for frame in self._assembler.push(chunk):
                self._process(frame)

    def _apply_faults(self) -> None:
        while True:
            try:
                reason = self._faults.get_nowait()
            except queue.Empty:
                return
            self.view.observe(SILENT, None, self.machine.set_fault(reason))

    def _process(self, frame: Frame) -> None:
        scored = not (self.machine.listening or self.machine.muted)
        events = self.machine.process(frame)
        detector, gate = self.machine.detector, None
        if isinstance(detector, GatedDetector):
            state = detector.gate
            gate = GateView(state.open, state.floor_dbfs, state.floor_dbfs + state.margin_db)
            scored = scored and state.open
        scores = None
        if scored and isinstance(detector, OwwDetector | GatedDetector):
            scores = dict(detector.scores)
        self.view.observe(frame_level(frame), scores, events, gate)


def _assembler(capture: Capture) -> FrameAssembler:
    settings = capture.settings
    return FrameAssembler(rate=capture.rate, channels=settings.channels, channel=settings.channel)


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
        # Vosk prints a screen of LOG lines on stderr while loading; failures still raise.
        with native_stderr_silenced():
            machine = build_machine(settings)
        if stop.is_set():
            return 0
        view = _view(settings)
        listener = Listener(machine=machine, view=view)
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
