"""Status LEDs: patterns (pure), gpiozero drivers, the animator thread, and HAT profiles.

gpiozero is imported only when a driver is opened.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from satellite.errors import AccessoryError, ConfigError
from satellite.leds.animator import LedAnimator, LedDriver
from satellite.leds.hats import HatLeds, HatProfile, available_hats, describe, load_hat
from satellite.leds.patterns import IDLE, PATTERNS, Indicator, Pattern

if TYPE_CHECKING:
    from satellite.config import ButtonSettings, LedSettings

__all__ = [
    "IDLE",
    "PATTERNS",
    "Backend",
    "HatLeds",
    "HatProfile",
    "Indicator",
    "LedAnimator",
    "LedDriver",
    "Pattern",
    "available_hats",
    "backend_of",
    "build_indicator",
    "build_leds",
    "cycle_patterns",
    "load_hat",
    "open_driver",
    "resolve_button",
    "resolve_leds",
]


def resolve_leds(settings: LedSettings) -> HatLeds:
    """The HAT profile's LEDs with the room config's overrides applied; ConfigError if invalid."""
    profile = load_hat(settings.hat, settings.hats_dir).leds
    overrides = {
        "driver": settings.driver,
        "pins": settings.pins,
        "pixels": settings.pixels,
        "spi_device": settings.spi_device,
        "active_high": settings.active_high,
    }
    merged = {**profile.model_dump(), **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return HatLeds.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(f"leds (hat {settings.hat!r} with overrides): {describe(exc)}") from exc


def open_driver(leds: HatLeds, *, brightness: float = 1.0, pin_factory: Any = None) -> LedDriver:
    """The driver for `leds`; AccessoryError when the hardware does not open (no HAT, no GPIO
    or SPI access, a pin in use)."""
    from satellite.leds import drivers

    try:
        if leds.driver == "single":
            return drivers.SingleLed(
                leds.pins[0],
                pwm=leds.pwm,
                active_high=leds.active_high,
                brightness=brightness,
                pin_factory=pin_factory,
            )
        if leds.driver == "rgb":
            red, green, blue = leds.pins
            return drivers.RgbLed(
                red,
                green,
                blue,
                active_high=leds.active_high,
                brightness=brightness,
                pin_factory=pin_factory,
            )
        if leds.driver == "apa102":
            return drivers.Apa102Strip(
                leds.pixels,
                port=leds.spi_port,
                device=leds.spi_device,
                brightness=brightness,
                enable_pin=leds.enable_pin,
                enable_active_high=leds.enable_active_high,
                pin_factory=pin_factory,
            )
    except Exception as exc:  # gpiozero's, lgpio's and spidev's errors have no common root
        raise AccessoryError(f"leds: cannot open the {leds.driver} LEDs: {exc}") from exc
    return drivers.NullLeds()


@dataclass(frozen=True)
class Backend:
    """How gpiozero reaches the LEDs: its pin factory and, for SPI LEDs, the SPI interface."""

    factory: str  # gpiozero's pin factory class, e.g. LGPIOFactory
    spi: str | None = None  # e.g. "hardware (LGPIOHardwareSPI)", or "software (...)"

    @property
    def fallback(self) -> str | None:
        """What is slower or less able than on a set-up Pi, and how to fix it; None if nothing.

        gpiozero's MockFactory is chosen on purpose (GPIOZERO_PIN_FACTORY=mock): never a
        fallback, though its SPI is the software kind.
        """
        if self.factory == "MockFactory":
            return None
        if self.factory == "NativeFactory":
            return (
                "gpiozero fell back to its native pin factory (no PWM, no Pi 5): "
                "install lgpio in the satellite's venv (re-run install.sh)"
            )
        if self.spi is not None and self.spi.startswith("software"):
            return (
                "APA102 LEDs on bit-banged software SPI: enable SPI (dtparam=spi=on, reboot) "
                "and install spidev in the satellite's venv (re-run install.sh)"
            )
        return None


def backend_of(driver: LedDriver) -> Backend:
    """The pin factory (and SPI interface) an open driver uses."""
    from gpiozero.pins.spi import SPISoftware

    device = getattr(driver, "_led", driver)  # SingleLed/RgbLed wrap a gpiozero device
    factory = getattr(device, "pin_factory", None)
    spi = getattr(driver, "_spi", None)
    spi_kind = None
    if spi is not None:
        kind = "software" if isinstance(spi, SPISoftware) else "hardware"
        spi_kind = f"{kind} ({type(spi).__name__})"
    return Backend("none" if factory is None else type(factory).__name__, spi_kind)


def build_leds(settings: LedSettings, *, pin_factory: Any = None) -> LedAnimator:
    """An animator on the configured LEDs, showing idle; ConfigError for a configuration that
    cannot work, AccessoryError when the hardware does not open."""
    leds = resolve_leds(settings)
    driver = open_driver(leds, brightness=settings.brightness, pin_factory=pin_factory)
    return LedAnimator(driver, fps=settings.fps)


def build_indicator(
    settings: LedSettings, *, now: Callable[[], float] = time.monotonic
) -> Indicator:
    """The state -> pattern chooser with the room's overrides and timeouts."""
    return Indicator(
        overrides=settings.patterns,
        timeouts_s=settings.timeouts,
        ceiling_s=settings.timeout_s,
        default=settings.default_pattern,
        now=now,
    )


def resolve_button(leds: LedSettings, button: ButtonSettings) -> ButtonSettings:
    """The button settings with the HAT's button filled in where the config leaves them unset.

    `enabled` unset means "if the HAT has a button"; an unset `pin` or `pull_up` takes the
    HAT's. The result always has `enabled` set.
    """
    if button.enabled is False:
        return button
    hat_button = load_hat(leds.hat, leds.hats_dir).button
    given = button.model_fields_set
    update: dict[str, Any] = {"enabled": button.enabled or hat_button is not None}
    if hat_button is not None:
        update |= {k: getattr(hat_button, k) for k in ("pin", "pull_up") if k not in given}
    return button.model_copy(update=update)


def cycle_patterns(
    animator: LedAnimator,
    seconds_each: float,
    on_step: Callable[[str], None],
    *,
    wait: Callable[[float], None] = time.sleep,
) -> list[str]:
    """Show every pattern in turn for `seconds_each` (for `satellite led-test`), then idle."""
    shown = []
    for name in PATTERNS:
        animator.set_pattern(name)
        on_step(name)
        wait(seconds_each)
        shown.append(name)
    animator.set_pattern(IDLE)
    return shown
