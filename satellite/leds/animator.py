"""LedAnimator: shows the chosen pattern on one driver, drawn by a background thread."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Protocol

from satellite.core.backoff import Backoff
from satellite.leds.patterns import IDLE, PATTERNS, Pattern
from satellite.leds.pixels import RGB

log = logging.getLogger(__name__)

_RETRY_MIN_S = 1.0
_RETRY_MAX_S = 30.0


class LedDriver(Protocol):
    """What the animator needs from a driver (see satellite.leds.drivers)."""

    @property
    def pixel_count(self) -> int: ...

    def show(self, pixels: Sequence[RGB]) -> None: ...

    def off(self) -> None: ...

    def close(self) -> None: ...


class LedAnimator:
    """Shows one pattern at a time on a driver.

    Threads: `set_pattern()`, `wait_shown()` and `close()` may be called from any thread (the
    control thread, in the daemon). Only the animator's own "leds" thread touches the driver,
    until `close()` has stopped it. Static patterns are drawn once per change, so an idle
    satellite costs nothing; moving ones are drawn at `fps`.
    """

    def __init__(
        self,
        driver: LedDriver,
        *,
        patterns: Mapping[str, Pattern] = PATTERNS,
        fps: float,
        initial: str = IDLE,
    ) -> None:
        if fps <= 0:
            raise ValueError("fps must be positive")
        self.driver = driver
        self._patterns = patterns
        self._interval_s = 1.0 / fps
        self._cond = threading.Condition()
        self._pattern = self._lookup(initial)
        self._started = time.monotonic()
        self._generation = 0  # bumped by every change, so the thread knows to redraw
        self._drawn: int | None = None  # the generation the thread drew last
        self._closing = False
        self.frames = 0
        self._thread = threading.Thread(target=self._run, name="leds", daemon=True)
        self._thread.start()

    @property
    def pattern(self) -> str:
        """The name of the pattern being shown."""
        return self._pattern.name

    def set_pattern(self, name: str) -> None:
        """Show `name` from now on (any thread); ValueError for an unknown pattern."""
        pattern = self._lookup(name)
        with self._cond:
            if pattern == self._pattern:
                return
            self._pattern, self._started = pattern, time.monotonic()
            self._generation += 1
            self._cond.notify_all()

    def wait_shown(self, name: str, timeout: float) -> bool:
        """Wait (at most `timeout` s) until `name` is the pattern and has been drawn."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._pattern.name == name and self._drawn == self._generation, timeout
            )

    def close(self, timeout: float = 1.0) -> None:
        """Stop the thread (bounded wait), turn the LEDs off, release the driver; idempotent."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the LED thread did not stop within %.1f s", timeout)
        try:
            self.driver.off()
        except Exception:
            log.exception("turning the LEDs off failed")
        finally:
            self.driver.close()

    def __enter__(self) -> LedAnimator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _lookup(self, name: str) -> Pattern:
        try:
            return self._patterns[name]
        except KeyError:
            raise ValueError(
                f"unknown LED pattern {name!r}; known: {', '.join(self._patterns)}"
            ) from None

    def _run(self) -> None:
        backoff = Backoff(_RETRY_MIN_S, _RETRY_MAX_S)
        while (job := self._next_job()) is not None:
            pattern, generation, started = job
            try:
                pixels = pattern.render(time.monotonic() - started, self.driver.pixel_count)
                self.driver.show(pixels)
            except Exception:
                retry_s = backoff.next()
                log.exception("LED driver failed; retrying in %.0f s", retry_s)
                with self._cond:
                    self._cond.wait_for(lambda: self._closing, retry_s)
                continue
            backoff.reset()
            with self._cond:
                self._drawn = generation
                self.frames += 1
                self._cond.notify_all()

    def _next_job(self) -> tuple[Pattern, int, float] | None:
        """Block until a frame is due (a change, or the next frame of a moving pattern)."""
        with self._cond:
            while not self._closing:
                if self._drawn != self._generation:
                    break
                if self._pattern.animated and self.driver.pixel_count > 0:
                    self._cond.wait(self._interval_s)
                    break
                self._cond.wait()
            if self._closing:
                return None
            return self._pattern, self._generation, self._started
