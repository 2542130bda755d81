"""What `satellite listen` shows: the level, wake scores, gate, session, transcripts and the
arbitration group, rendered by rich from what the frame loop and the broker tell it."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rich.console import RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from satellite.core.frames import Frame, amplitude_dbfs, frames_for
from satellite.core.session import Event, Final, Idle, Interim, Listening, WakeDetected
from satellite.mqtt.inbound import ClaimReceived, ResultReceived

FLOOR_DBFS = -60.0  # the left end of the level bar
BAR_WIDTH = 40
FINALS_SHOWN = 5
HOUSEHOLD_SHOWN = 6  # claims and results of the group
# A wake score lasts a frame or two: the bar also shows the highest of the last 2 s.
_HOLD_FRAMES = frames_for(2.0)
_CLIP_DBFS = -0.1


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


def _fraction(dbfs: float) -> float:
    return 0.0 if dbfs <= FLOOR_DBFS else min(1.0, (dbfs - FLOOR_DBFS) / -FLOOR_DBFS)


def _level_style(dbfs: float) -> str:
    return "red" if dbfs > -6 else "yellow" if dbfs > -20 else "green"


def _db(dbfs: float) -> str:
    return f"{dbfs:6.1f}" if math.isfinite(dbfs) else "  -inf"


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))
