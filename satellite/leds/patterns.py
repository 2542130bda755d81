"""LED patterns: named animations over time, and which one a state shows. Knows nothing of pins."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

from satellite.config import check_pattern
from satellite.leds.pixels import RGB, Pixels

log = logging.getLogger(__name__)

IDLE = "idle"
MUTED = "muted"
OFFLINE = "offline"
ERROR = "error"
DEFAULT_PATTERN = "unknown"

# A pulse never goes fully dark, so it reads as "breathing" rather than blinking.
_PULSE_FLOOR = 0.15


class Effect(Enum):
    """How a pattern's brightness moves over time."""

    OFF = "off"
    SOLID = "solid"
    PULSE = "pulse"
    BLINK = "blink"
    SPIN = "spin"


@dataclass(frozen=True)
class Pattern:
    """A named animation: the colour of each of N pixels, t seconds after it started."""

    name: str
    effect: Effect
    colour: RGB = (0.0, 0.0, 0.0)
    period_s: float = 1.0

    @property
    def animated(self) -> bool:
        """Whether the pixels change over time (static patterns are drawn once)."""
        return self.effect in (Effect.PULSE, Effect.BLINK, Effect.SPIN)

    def render(self, t: float, count: int) -> Pixels:
        """The colours of `count` pixels at `t` seconds since the pattern started."""
        phase = (t / self.period_s) % 1.0
        if self.effect is Effect.SPIN:
            return tuple(_scale(self.colour, _spin_level(i, phase, count)) for i in range(count))
        return (_scale(self.colour, _level(self.effect, phase)),) * count


def _level(effect: Effect, phase: float) -> float:
    if effect is Effect.OFF:
        return 0.0
    if effect is Effect.PULSE:
        return _PULSE_FLOOR + (1.0 - _PULSE_FLOOR) * (0.5 + 0.5 * math.cos(2 * math.pi * phase))
    if effect is Effect.BLINK:
        return 1.0 if phase < 0.5 else 0.0
    return 1.0


def _spin_level(index: int, phase: float, count: int) -> float:
    # A bright head goes round the ring once per period with a tail half the ring long.
    head = phase * count
    behind = (head - index) % count
    return max(0.0, 1.0 - behind / max(1.0, count / 2))


def _scale(colour: RGB, level: float) -> RGB:
    red, green, blue = colour
    return (red * level, green * level, blue * level)


PATTERNS: Mapping[str, Pattern] = {
    pattern.name: pattern
    for pattern in (
        Pattern(IDLE, Effect.OFF),
        Pattern("wake_detected", Effect.SOLID, (1.0, 1.0, 1.0)),
        Pattern("listening", Effect.PULSE, (0.0, 0.3, 1.0), period_s=2.0),
        Pattern("processing", Effect.SPIN, (0.0, 0.8, 1.0), period_s=1.0),
        Pattern("responding", Effect.PULSE, (0.0, 1.0, 0.3), period_s=1.5),
        Pattern("attentive", Effect.SOLID, (0.0, 0.15, 0.6)),
        Pattern(MUTED, Effect.SOLID, (0.6, 0.0, 0.0)),
        Pattern("error", Effect.BLINK, (1.0, 0.0, 0.0), period_s=1.0),
        Pattern(OFFLINE, Effect.PULSE, (1.0, 0.35, 0.0), period_s=4.0),
        Pattern(DEFAULT_PATTERN, Effect.PULSE, (0.6, 0.6, 0.6), period_s=3.0),
    )
}
"""Every pattern by name, in the order `satellite led-test` shows them."""

DEFAULT_STATE_PATTERNS: Mapping[str, str] = {
    name: name for name in PATTERNS if name != DEFAULT_PATTERN
}
"""State -> pattern before overrides: each known state has the pattern of the same name."""

DEFAULT_TIMEOUTS_S: Mapping[str, float] = {
    "wake_detected": 10.0,
    "listening": 30.0,
    "processing": 30.0,
    "responding": 60.0,
    "attentive": 20.0,
    "error": 10.0,
    DEFAULT_PATTERN: 30.0,
}
"""Seconds a session pattern lasts without a new state before idle shows again."""

FALLBACK_TIMEOUT_S = 30.0
"""Timeout of a session pattern with no entry above (a state mapped to `muted`, say)."""

INBOUND_MAY_SHOW: Mapping[str, bool] = {
    IDLE: True,
    "wake_detected": False,  # "this satellite heard its wake word"
    "listening": False,  # "this satellite's microphone is open"
    "processing": True,
    "responding": True,
    "attentive": True,
    MUTED: False,  # "nothing listens here"
    ERROR: True,
    OFFLINE: False,  # "this satellite lost the broker", over a message from that broker
    DEFAULT_PATTERN: True,
}
"""Which patterns a state from another publisher (gateway, dashboard, another satellite) may
show, after the room's overrides. Those it may not are promises about this satellite itself:
only its own events show them. (README: LEDs, mute, status and commands.)"""

OWN_SESSION_STATES = frozenset({"wake_detected", "listening"})
"""This satellite's own states that open its session: others' states wait until it ends."""


class Indicator:
    """Chooses the pattern to show from the session state and the muted/offline conditions.

    Priority: microphone fault > muted > offline > the last session state. A broken
    microphone wins because the room must learn that the satellite cannot hear, muted or
    not; muted is a promise to the room (nothing is listening); offline beats session
    patterns because while the broker is gone nothing said reaches the assistant, so
    "listening" would mislead. Every session pattern other than idle's returns to idle
    after its timeout; the fault, muted and offline conditions last as long as they hold.

    States from other publishers (`show_inbound`) never show a pattern INBOUND_MAY_SHOW
    forbids, and while this satellite's own session is open (wake_detected or listening,
    until its own next state) they are held back: the last one shows when the session
    ends, if its timeout (counted from its arrival) has not run out by then.
    Not thread-safe: one thread (the control thread) owns it.
    """

    def __init__(
        self,
        *,
        overrides: Mapping[str, str] | None = None,
        timeouts_s: Mapping[str, float] | None = None,
        ceiling_s: float,
        default: str,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._states = {**DEFAULT_STATE_PATTERNS, **(overrides or {})}
        self._timeouts = {**DEFAULT_TIMEOUTS_S, **(timeouts_s or {})}
        for name in [*self._states.values(), *self._timeouts, default]:
            check_pattern(name)
        self._ceiling_s = ceiling_s
        self._default = default
        self._now = now
        self._session: _Shown | None = None
        self._held: _Shown | None = None  # an inbound state waiting for our session to end
        self.own_session = False
        self.muted = False
        self.offline = False
        self.faulted = False

    def pattern_for(self, state: str) -> str:
        """The pattern a state maps to (overrides first; unknown states get the default)."""
        return self._states.get(state, self._default)

    def timeout_for(self, pattern: str) -> float:
        """Seconds `pattern` lasts as a session pattern, capped by the ceiling."""
        return min(self._timeouts.get(pattern, FALLBACK_TIMEOUT_S), self._ceiling_s)

    def show(self, state: str) -> None:
        """This satellite's own session state: wake_detected and listening open its session,
        any other state ends it (and what others said meanwhile shows, if still current)."""
        opened = state in OWN_SESSION_STATES
        if opened and not self.own_session:
            self._held = None
        self.own_session = opened
        pattern = self.pattern_for(state)
        log.debug("own state %r -> pattern %s", state, pattern)
        self._session = self._entry(pattern)
        if not opened and self._held is not None:
            self._session, self._held = self._held, None

    def show_inbound(self, state: str, source: str | None = None) -> None:
        """A state from another publisher; see the class docstring for what it may show."""
        pattern = self.pattern_for(state)
        if not INBOUND_MAY_SHOW.get(pattern, False):
            log.debug(
                "state %r from %s ignored: only this satellite shows %s", state, source, pattern
            )
            return
        if self.own_session:
            log.debug("state %r from %s held back: own session open", state, source)
            self._held = self._entry(pattern)
            return
        log.debug("state %r from %s -> pattern %s", state, source or "?", pattern)
        self._session = self._entry(pattern)

    def _entry(self, pattern: str) -> _Shown | None:
        if pattern == self.pattern_for(IDLE):
            return None
        return _Shown(pattern, self._now() + self.timeout_for(pattern))

    def set_offline(self, offline: bool) -> None:
        """The broker connection went down (True) or came back (False)."""
        self.offline = offline

    def set_muted(self, muted: bool) -> None:
        """Mute switched on or off."""
        self.muted = muted

    def set_fault(self, faulted: bool) -> None:
        """The microphone failed (True: the error pattern until it works again) or recovered."""
        self.faulted = faulted

    def tick(self) -> str:
        """Apply timeouts and return the pattern to show now."""
        if self._session is not None and self._now() >= self._session.deadline:
            log.debug("pattern %s timed out; back to idle", self._session.pattern)
            self._session = None
        return self.current

    @property
    def current(self) -> str:
        """The pattern to show (as of the last `tick()` for timeouts)."""
        if self.faulted:
            return self.pattern_for(ERROR)
        if self.muted:
            return self.pattern_for(MUTED)
        if self.offline:
            return self.pattern_for(OFFLINE)
        if self._session is not None:
            return self._session.pattern
        return self.pattern_for(IDLE)


@dataclass(frozen=True)
class _Shown:
    """A session pattern and the monotonic time it falls back to idle."""

    pattern: str
    deadline: float
