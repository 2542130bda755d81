"""LED drivers over gpiozero: one LED, an RGB LED, an APA102 strip on SPI, or none at all.

Drivers draw pixels; they know nothing of states, patterns or MQTT. Each takes
`pin_factory=None` like every gpiozero device, so tests run the same code on MockFactory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from gpiozero import LED, PWMLED, RGBLED, DigitalOutputDevice, SPIDevice

from satellite.leds.pixels import BLACK, RGB
from satellite.leds.spi import open_spi

# An on/off LED lights when the pattern's level reaches this (pulses then blink on it).
ON_THRESHOLD = 0.25


def _unit(value: float) -> float:
    return min(1.0, max(0.0, value))


def pixel_level(pixel: RGB) -> float:
    """The brightness of a one-colour LED for a pixel colour: its strongest channel.

    Not luminance: by luminance a blue pattern would light a plain LED at 7 %, i.e. not at all.
    """
    return _unit(max(pixel))


class SingleLed:
    """One plain LED on a GPIO pin: dimmed by PWM, or just on/off when `pwm` is False."""

    pixel_count = 1

    def __init__(
        self,
        pin: int,
        *,
        pwm: bool = True,
        active_high: bool = True,
        brightness: float = 1.0,
        pin_factory: Any = None,
    ) -> None:
        device = PWMLED if pwm else LED
        self._led = device(pin, active_high=active_high, pin_factory=pin_factory)
        self._pwm = pwm
        self.brightness = _unit(brightness)

    def show(self, pixels: Sequence[RGB]) -> None:
        """Light the LED by the first pixel's colour."""
        level = pixel_level(pixels[0]) if pixels else 0.0
        if self._pwm:
            self._led.value = level * self.brightness
        elif level >= ON_THRESHOLD and self.brightness > 0:
            self._led.on()
        else:
            self._led.off()

    def off(self) -> None:
        """Turn the LED off."""
        self._led.off()

    def close(self) -> None:
        """Release the pin; idempotent."""
        self._led.close()

    def __enter__(self) -> SingleLed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RgbLed:
    """One RGB LED on three PWM pins (common cathode: active_high; common anode: not)."""

    pixel_count = 1

    def __init__(
        self,
        red: int,
        green: int,
        blue: int,
        *,
        active_high: bool = True,
        brightness: float = 1.0,
        pin_factory: Any = None,
    ) -> None:
        self._led = RGBLED(
            red, green, blue, active_high=active_high, pwm=True, pin_factory=pin_factory
        )
        self.brightness = _unit(brightness)

    def show(self, pixels: Sequence[RGB]) -> None:
        """Show the first pixel's colour."""
        colour = pixels[0] if pixels else BLACK
        self._led.value = tuple(_unit(channel) * self.brightness for channel in colour)

    def off(self) -> None:
        """Turn all three colours off."""
        self._led.off()

    def close(self) -> None:
        """Release the pins; idempotent."""
        self._led.close()

    def __enter__(self) -> RgbLed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def apa102_end_frame_length(count: int) -> int:
    """Zero bytes after the pixel data of `count` APA102 pixels.

    Each pixel delays the data by half a clock, so N/2 more clock edges push the last frame
    to the last pixel: ceil(N/16) bytes (tinue/apa102-pi; cpldcpu, "Understanding the APA102
    Superled", 2014). Four more zero bytes are the "reset frame" SK9822 clones need before
    they show new data (cpldcpu, "SK9822 - a clone of the APA102?", 2016); without it such a
    strip shows each frame one update late, so a static pattern would stay on the last one.
    Zeros rather than the datasheet's 0xFF: ones can be taken as a white frame by a pixel
    past the configured count.
    """
    return 4 + math.ceil(count / 16)


def apa102_frame(pixels: Sequence[RGB], brightness: float) -> bytes:
    """The bytes of one update: start frame, 0xE0|level then blue, green, red per pixel, end."""
    header = 0xE0 | round(_unit(brightness) * 31)
    frame = bytearray(4)
    for red, green, blue in pixels:
        frame += bytes((header, _byte(blue), _byte(green), _byte(red)))
    return bytes(frame + bytes(apa102_end_frame_length(len(pixels))))


def _byte(channel: float) -> int:
    return round(_unit(channel) * 255)


class Apa102Strip(SPIDevice):  # type: ignore[misc]
    """APA102 pixels on an SPI port, with an optional pin that switches their power on.

    Brightness goes into the 5-bit global level of every pixel, so patterns keep the full
    8 bits per colour. The ReSpeaker 4-Mic Array powers its LEDs only while GPIO5 is high;
    the 2-Mic HAT has no such pin.
    """

    def __init__(
        self,
        pixels: int,
        *,
        port: int = 0,
        device: int = 0,
        brightness: float = 1.0,
        enable_pin: int | None = None,
        enable_active_high: bool = True,
        pin_factory: Any = None,
    ) -> None:
        if pixels < 1:
            raise ValueError("an APA102 strip has at least one pixel")
        self.pixel_count = pixels
        self.brightness = _unit(brightness)
        self._enable: Any = None
        self._pixels: tuple[RGB, ...] = (BLACK,) * pixels
        self._spi: Any = None
        # SPIDevice.__init__ would ask the factory for SPI, whose software fallback loads the
        # global default factory: open it here with the factory given (satellite.leds.spi).
        super(SPIDevice, self).__init__(pin_factory=pin_factory)
        self._spi = open_spi(port, device, pin_factory=self.pin_factory)
        if enable_pin is not None:
            try:
                self._enable = DigitalOutputDevice(
                    enable_pin,
                    active_high=enable_active_high,
                    initial_value=True,
                    pin_factory=pin_factory,
                )
            except BaseException:
                super().close()
                raise

    @property
    def value(self) -> tuple[RGB, ...]:
        """The colours last shown, one per pixel."""
        return self._pixels

    @property
    def powered(self) -> bool:
        """Whether the LED power-enable pin is on (True when there is no such pin)."""
        return self._enable is None or bool(self._enable.value)

    def show(self, pixels: Sequence[RGB]) -> None:
        """Show one colour per pixel (missing pixels black, extra ones ignored)."""
        self._check_open()
        count = self.pixel_count
        shown = (*tuple(pixels)[:count], *(BLACK,) * max(0, count - len(pixels)))
        self._spi.transfer(list(apa102_frame(shown, self.brightness)))
        self._pixels = shown

    def off(self) -> None:
        """Show black on every pixel (the power pin stays on)."""
        self.show(())

    def close(self) -> None:
        """Blank the strip, switch its power off, release SPI and pins; idempotent."""
        try:
            if getattr(self, "_spi", None) is not None:  # also runs from __del__, half-built
                self.off()
        finally:
            enable = getattr(self, "_enable", None)
            if enable is not None:
                enable.off()
                enable.close()
                self._enable = None
            super().close()


class NullLeds:
    """No LEDs at all (a room without any): every call does nothing."""

    pixel_count = 0

    def show(self, pixels: Sequence[RGB]) -> None:
        """Nothing to light."""

    def off(self) -> None:
        """Nothing to turn off."""

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> NullLeds:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
