"""The physical mute button (gpiozero)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from satellite.errors import AccessoryError


class MuteButton:
    """A debounced push button; `on_press` runs on gpiozero's callback thread."""

    def __init__(
        self,
        *,
        pin: int,
        pull_up: bool,
        bounce_s: float,
        on_press: Callable[[], None],
        pin_factory: Any = None,
    ) -> None:
        from gpiozero import Button

        try:
            self._button = Button(
                pin, pull_up=pull_up, bounce_time=bounce_s, pin_factory=pin_factory
            )
        except Exception as exc:  # gpiozero's and lgpio's errors have no common root
            raise AccessoryError(f"button: cannot open GPIO{pin}: {exc}") from exc
        # A zero-argument lambda: gpiozero passes the device to one-argument callables.
        self._button.when_pressed = lambda: on_press()  # noqa: PLW0108

    @property
    def pressed(self) -> bool:
        """Whether the button is held down now."""
        return bool(self._button.is_pressed)

    def close(self) -> None:
        """Release the pin; idempotent."""
        self._button.close()

    def __enter__(self) -> MuteButton:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
