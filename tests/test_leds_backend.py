"""Which pin factory and SPI the LEDs run on, and the `satellite check` line that says so."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPWMPin

from satellite.commands.check import check_leds
from satellite.config import LedSettings, Settings
from satellite.leds import Backend, backend_of
from satellite.leds.drivers import Apa102Strip, SingleLed
from tests.support.satellite_proc import HATS_DIR


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    mock = MockFactory(pin_class=MockPWMPin)
    yield mock
    mock.reset()


@pytest.fixture
def default_mock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """gpiozero's default factory is the mock one, as `GPIOZERO_PIN_FACTORY=mock` makes it."""
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    monkeypatch.setenv("GPIOZERO_MOCK_PIN_CLASS", "mockpwmpin")
    Device.pin_factory = None
    yield
    if Device.pin_factory is not None:
        Device.pin_factory.close()
    Device.pin_factory = None


def test_a_gpio_led_names_its_factory_and_needs_no_spi(factory: MockFactory) -> None:
    with SingleLed(27, pwm=True, pin_factory=factory) as led:
        assert backend_of(led) == Backend("MockFactory", None)
    assert Backend("MockFactory").fallback is None


def test_apa102_on_software_spi_is_a_fallback_on_a_real_factory(factory: MockFactory) -> None:
    strip = Apa102Strip(3, pin_factory=factory)
    try:
        backend = backend_of(strip)
    finally:
        strip.close()
    assert backend == Backend("MockFactory", "software (SoftwareSpi)")
    assert backend.fallback is None  # the mock factory is chosen on purpose
    bitbanged = Backend("LGPIOFactory", "software (SPISoftwareInterface)").fallback
    assert bitbanged is not None and "dtparam=spi=on" in bitbanged


def test_native_factory_is_a_fallback_and_lgpio_is_not() -> None:
    native = Backend("NativeFactory").fallback
    assert native is not None and "install lgpio" in native
    assert Backend("LGPIOFactory", "hardware (LGPIOHardwareSPI)").fallback is None


def test_check_names_the_factory(default_mock: None) -> None:
    settings = Settings(room_id="salon", leds=LedSettings(hat="gpio-led", hats_dir=HATS_DIR))
    result = check_leds(settings, step_s=0.0)
    assert result.ok, result
    assert "on MockFactory" in result.detail


def test_check_names_the_spi_interface_and_device(default_mock: None) -> None:
    settings = Settings(room_id="salon", leds=LedSettings(hat="respeaker-2mic", hats_dir=HATS_DIR))
    result = check_leds(settings, step_s=0.0)
    assert result.ok, result
    assert "SPI software (SoftwareSpi) on /dev/spidev0.0" in result.detail


def test_check_flags_a_fallback_with_its_fix(
    default_mock: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import satellite.leds

    native = Backend("NativeFactory")
    monkeypatch.setattr(satellite.leds, "backend_of", lambda driver: native)
    settings = Settings(room_id="salon", leds=LedSettings(hat="gpio-led", hats_dir=HATS_DIR))
    result = check_leds(settings, step_s=0.0)
    assert result.ok is False and result.fix == native.fallback, result
