"""The gpiozero LED drivers on MockFactory: PWM duty cycles, RGB pins, APA102 frames on SPI."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPWMPin, MockSPIDevice

from satellite.config import LedSettings
from satellite.leds import build_indicator
from satellite.leds.drivers import (
    Apa102Strip,
    NullLeds,
    RgbLed,
    SingleLed,
    apa102_end_frame_length,
    apa102_frame,
)
from satellite.leds.patterns import DEFAULT_STATE_PATTERNS, PATTERNS
from satellite.leds.pixels import RGB

BLUE: RGB = (0.0, 0.0, 1.0)
DIM_BLUE: RGB = (0.0, 0.0, 0.1)
WHITE: RGB = (1.0, 1.0, 1.0)
# SPI0 on the Pi header (BCM): the mock bus bit-bangs these pins.
SCLK, MOSI, CE0 = 11, 10, 8


@pytest.fixture
def mock_factory() -> Iterator[MockFactory]:
    factory = MockFactory(pin_class=MockPWMPin)
    yield factory
    factory.reset()


@pytest.fixture
def spi_factory() -> Iterator[MockFactory]:
    # Plain MockPins: MockSPIDevice's clock pin is not a PWM pin, and a factory hands out
    # one pin class per pin.
    factory = MockFactory()
    yield factory
    factory.reset()


class FrameCatcher(MockSPIDevice):  # type: ignore[misc]
    """The LED side of the SPI bus: every transfer (chip select active) as bytes."""

    def __init__(self, factory: MockFactory) -> None:
        self.frames: list[bytes] = []
        super().__init__(SCLK, MOSI, None, CE0, pin_factory=factory)

    def on_select(self) -> None:
        super().on_select()
        if self.select_pin.state != self.select_high and self.rx_buf:
            bits = [int(bit) for bit in self.rx_buf]
            self.frames.append(
                bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))
            )


@pytest.fixture
def catcher(spi_factory: MockFactory) -> Iterator[FrameCatcher]:
    with FrameCatcher(spi_factory) as device:
        yield device


def expected_frame(pixels: list[RGB], level: int) -> bytes:
    """APA102 bytes computed by hand: 4 zero bytes, per pixel 0xE0|level B G R, then zeros."""
    body = b"".join(
        bytes([0xE0 | level, round(b * 255), round(g * 255), round(r * 255)]) for r, g, b in pixels
    )
    end = 4 + (len(pixels) + 15) // 16
    return bytes(4) + body + bytes(end)


def duty(factory: MockFactory, pin: int) -> float:
    return float(factory.pin(pin).state)


def test_single_led_pwm_brightness_is_the_pin_duty_cycle(mock_factory: MockFactory) -> None:
    with SingleLed(18, brightness=0.5, pin_factory=mock_factory) as led:
        led.show([BLUE])
        assert duty(mock_factory, 18) == pytest.approx(0.5)
        led.show([(0.2, 0.8, 0.0)])
        assert duty(mock_factory, 18) == pytest.approx(0.4)
        led.off()
        assert duty(mock_factory, 18) == 0.0


def test_single_led_on_off_without_pwm(mock_factory: MockFactory) -> None:
    with SingleLed(27, pwm=False, pin_factory=mock_factory) as led:
        led.show([BLUE])
        assert mock_factory.pin(27).state
        led.show([DIM_BLUE])
        assert not mock_factory.pin(27).state
        led.show([])
        assert not mock_factory.pin(27).state


def test_single_led_active_low_inverts_the_pin(mock_factory: MockFactory) -> None:
    with SingleLed(18, active_high=False, pin_factory=mock_factory) as led:
        led.show([WHITE])
        assert duty(mock_factory, 18) == 0.0
        led.off()
        assert duty(mock_factory, 18) == 1.0


def test_single_led_close_is_idempotent_and_releases_the_pin(mock_factory: MockFactory) -> None:
    led = SingleLed(18, pin_factory=mock_factory)
    led.close()
    led.close()
    with SingleLed(18, pin_factory=mock_factory) as again:
        again.show([WHITE])
        assert duty(mock_factory, 18) == 1.0


def test_rgb_led_drives_three_pins_by_colour(mock_factory: MockFactory) -> None:
    with RgbLed(5, 6, 13, pin_factory=mock_factory) as led:
        led.show([(1.0, 0.5, 0.25)])
        assert [duty(mock_factory, pin) for pin in (5, 6, 13)] == [1.0, 0.5, 0.25]
        led.off()
        assert [duty(mock_factory, pin) for pin in (5, 6, 13)] == [0.0, 0.0, 0.0]


def test_rgb_led_brightness_and_common_anode(mock_factory: MockFactory) -> None:
    with RgbLed(5, 6, 13, active_high=False, brightness=0.5, pin_factory=mock_factory) as led:
        led.show([(1.0, 0.5, 0.0)])
        assert [duty(mock_factory, pin) for pin in (5, 6, 13)] == [0.5, 0.75, 1.0]
    with RgbLed(5, 6, 13, pin_factory=mock_factory) as again:
        again.close()


def test_apa102_frame_layout() -> None:
    frame = apa102_frame([(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)], brightness=1.0)
    assert frame[:4] == bytes(4)
    assert frame[4:16] == bytes.fromhex("ff0000ffff00ff00ffff0000")
    assert frame[16:] == bytes(5)


def test_apa102_brightness_goes_into_the_five_bit_level() -> None:
    assert apa102_frame([WHITE], brightness=0.0)[4] == 0xE0
    assert apa102_frame([WHITE], brightness=0.5)[4] == 0xE0 | 16
    assert apa102_frame([WHITE], brightness=1.0)[4] == 0xFF


def test_apa102_end_frame_grows_with_the_strip() -> None:
    assert [apa102_end_frame_length(n) for n in (1, 3, 12, 16, 17, 64)] == [5, 5, 5, 5, 6, 8]


def test_apa102_strip_sends_one_frame_per_show(
    spi_factory: MockFactory, catcher: FrameCatcher
) -> None:
    with Apa102Strip(3, brightness=1.0, pin_factory=spi_factory) as strip:
        strip.show([(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)])
        assert catcher.frames[-1] == bytes.fromhex("00000000ff0000ffff00ff00ffff0000") + bytes(5)
        strip.show([WHITE])
        assert catcher.frames[-1] == expected_frame([WHITE, (0, 0, 0), (0, 0, 0)], 31)
        assert strip.value == (WHITE, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0))


@pytest.mark.parametrize("state", [*DEFAULT_STATE_PATTERNS, "unheard_of_state"])
def test_apa102_frames_for_each_state(
    spi_factory: MockFactory, catcher: FrameCatcher, state: str
) -> None:
    pattern = PATTERNS[build_indicator(LedSettings()).pattern_for(state)]
    pixels = list(pattern.render(0.3, 12))
    with Apa102Strip(12, brightness=0.5, pin_factory=spi_factory) as strip:
        strip.show(pixels)
        frame = catcher.frames[-1]
    assert frame == expected_frame(pixels, 16)
    assert len(frame) == 4 + 12 * 4 + 5
    assert all(frame[4 + 4 * i] == 0xE0 | 16 for i in range(12))


def test_apa102_known_state_frames(spi_factory: MockFactory, catcher: FrameCatcher) -> None:
    with Apa102Strip(3, brightness=1.0, pin_factory=spi_factory) as strip:
        for pattern, pixel in [
            ("idle", "ff000000"),
            ("wake_detected", "ffffffff"),
            ("muted", "ff000099"),
            ("attentive", "ff992600"),
        ]:
            strip.show(PATTERNS[pattern].render(0.3, 3))
            assert catcher.frames[-1] == bytes(4) + bytes.fromhex(pixel * 3) + bytes(5), pattern


def test_apa102_close_blanks_the_strip(spi_factory: MockFactory, catcher: FrameCatcher) -> None:
    strip = Apa102Strip(3, pin_factory=spi_factory)
    strip.show([WHITE] * 3)
    strip.close()
    assert catcher.frames[-1] == expected_frame([(0, 0, 0)] * 3, 31)
    strip.close()
    assert strip.closed


def test_apa102_power_enable_pin_active_high(spi_factory: MockFactory) -> None:
    with Apa102Strip(12, enable_pin=5, pin_factory=spi_factory) as strip:
        assert spi_factory.pin(5).state is True
        assert strip.powered
    assert spi_factory.pin(5).state is False


def test_apa102_power_enable_pin_active_low(spi_factory: MockFactory) -> None:
    with Apa102Strip(12, enable_pin=5, enable_active_high=False, pin_factory=spi_factory):
        assert spi_factory.pin(5).state is False
    assert spi_factory.pin(5).state is True


def test_apa102_without_enable_pin_leaves_gpio5_alone(spi_factory: MockFactory) -> None:
    with Apa102Strip(3, pin_factory=spi_factory) as strip:
        assert strip.powered
        assert spi_factory.pin(5).function == "input"


def test_apa102_rejects_an_empty_strip(spi_factory: MockFactory) -> None:
    with pytest.raises(ValueError):
        Apa102Strip(0, pin_factory=spi_factory)


def test_null_leds_do_nothing() -> None:
    with NullLeds() as leds:
        leds.show([WHITE])
        leds.off()
        assert leds.pixel_count == 0


def test_apa102_leaves_the_default_pin_factory_alone(spi_factory: MockFactory) -> None:
    from gpiozero import Device

    assert Device.pin_factory is None
    with Apa102Strip(3, pin_factory=spi_factory) as strip:
        assert strip.pin_factory is spi_factory
    assert Device.pin_factory is None


class WatchedFactory(MockFactory):  # type: ignore[misc]
    """Records gpiozero's global default factory each time it hands out a pin."""

    def __init__(self) -> None:
        super().__init__()
        self.globals_seen: list[object] = []

    def pin(self, name: Any, pin_class: Any = None, **kwargs: Any) -> Any:
        self.globals_seen.append(Device.pin_factory)
        return super().pin(name, pin_class, **kwargs)


def test_apa102_software_spi_never_sets_the_global_factory_even_while_built() -> None:
    factory = WatchedFactory()
    try:
        with Apa102Strip(3, enable_pin=5, pin_factory=factory) as strip:
            strip.show([WHITE])
        assert len(factory.globals_seen) >= 4  # clock, MOSI, MISO, select (and the enable pin)
        assert set(factory.globals_seen) == {None}
    finally:
        factory.reset()
