"""The LEDs and the mute button as accessories: opened when they can be, retried when not.

A HAT that is missing, not enabled yet (SPI after the next reboot) or without GPIO access is
a fault reported in the status and retried with a backoff, never a reason to stop listening.
Only a configuration that can never work (an unknown HAT, pins outside the header) is a
ConfigError, raised by `Accessories.__init__` like any other.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import Any

from satellite.config import ButtonSettings, LedSettings
from satellite.core.backoff import Backoff
from satellite.errors import AccessoryError
from satellite.leds import IDLE, LedAnimator, open_driver, resolve_button, resolve_leds
from satellite.leds.button import MuteButton

log = logging.getLogger(__name__)

RETRY_MIN_S = 1.0
RETRY_MAX_S = 60.0


class Accessories:
    """Shows LED patterns and reports button presses, once the hardware lets it.

    `set_pattern` works at any time: the pattern is remembered and shown as soon as the LEDs
    open. `on_fault(reason)` is called (on the caller's thread for the first try, then on the
    retry thread) on the first try and whenever the fault changes; None means everything
    configured is open.
    """

    def __init__(
        self,
        leds: LedSettings,
        button: ButtonSettings,
        *,
        on_press: Callable[[], None],
        on_fault: Callable[[str | None], None],
        pin_factory: Any = None,
        retry_s: tuple[float, float] = (RETRY_MIN_S, RETRY_MAX_S),
        rng: random.Random | None = None,
    ) -> None:
        """`retry_s`: the first wait before trying again, and the longest (doubling, ±20 %)."""
        self._leds_settings = leds
        self._hat_leds = resolve_leds(leds)  # ConfigError: a HAT profile that cannot work
        self._button_settings = resolve_button(leds, button)
        self._on_press = on_press
        self._on_fault = on_fault
        self._pin_factory = pin_factory
        self._backoff = Backoff(*retry_s, jitter=0.2, rng=rng)
        self._lock = threading.Lock()
        self._animator: LedAnimator | None = None
        self._button: MuteButton | None = None
        self._pattern = IDLE
        self._fault: str | None = None
        self._reported = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def fault(self) -> str | None:
        """What does not open now (and why), or None."""
        return self._fault

    @property
    def pattern(self) -> str:
        """The pattern shown, or to be shown once the LEDs open."""
        return self._pattern

    def start(self) -> None:
        """Open what opens now; retry the rest in the background."""
        if not self._try_open():
            self._thread = threading.Thread(target=self._retry, name="accessories", daemon=True)
            self._thread.start()

    def set_pattern(self, name: str) -> None:
        """Show `name` (any thread); remembered while the LEDs are not open."""
        with self._lock:
            self._pattern = name
            if self._animator is not None:
                self._animator.set_pattern(name)

    def wait_shown(self, name: str, timeout: float) -> bool:
        """Whether the LEDs are open and drew `name` within `timeout` seconds."""
        animator = self._animator
        return animator is not None and animator.wait_shown(name, timeout)

    def close(self) -> None:
        """Stop retrying, turn the LEDs off and release the pins; idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        with self._lock:
            animator, self._animator = self._animator, None
            button, self._button = self._button, None
        if button is not None:
            button.close()
        if animator is not None:
            animator.close()

    def _retry(self) -> None:
        while not self._stop.wait(self._backoff.next()):
            if self._try_open():
                log.info("LEDs and button open now")
                return

    def _try_open(self) -> bool:
        """Open whatever is still closed; whether everything is open now."""
        problems = [p for p in (self._open_leds(), self._open_button()) if p is not None]
        fault = "; ".join(problems) or None
        if fault != self._fault or not self._reported:
            if fault is not None and self._fault is None:
                log.warning("%s; listening goes on, retrying in the background", fault)
            self._fault, self._reported = fault, True
            self._on_fault(fault)
        return fault is None

    def _open_leds(self) -> str | None:
        if self._animator is not None:
            return None
        settings = self._leds_settings
        try:
            driver = open_driver(
                self._hat_leds, brightness=settings.brightness, pin_factory=self._pin_factory
            )
        except AccessoryError as exc:
            return str(exc)
        animator = LedAnimator(driver, fps=settings.fps)
        with self._lock:
            self._animator = animator
            animator.set_pattern(self._pattern)
        return None

    def _open_button(self) -> str | None:
        button = self._button_settings
        if self._button is not None or not button.enabled:
            return None
        try:
            self._button = MuteButton(
                pin=button.pin,
                pull_up=button.pull_up,
                bounce_s=button.bounce_s,
                on_press=self._on_press,
                pin_factory=self._pin_factory,
            )
        except AccessoryError as exc:
            return str(exc)
        return None
