"""The LedAnimator thread, build_leds from HAT profiles, and the led-test cycle."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from gpiozero import DigitalOutputDevice
from gpiozero.pins.mock import MockFactory, MockPWMPin, MockSPIDevice

from satellite.config import LedSettings
from satellite.errors import AccessoryError, ConfigError
from satellite.leds import build_indicator, build_leds, cycle_patterns
from satellite.leds.animator import LedAnimator
from satellite.leds.drivers import Apa102Strip, NullLeds, SingleLed, apa102_frame
from satellite.leds.patterns import PATTERNS
from satellite.leds.pixels import RGB
from tests.support.satellite_proc import HATS_DIR

WAIT_S = 5.0  # upper bound for any wait on the animator thread
FPS = LedSettings().fps  # the room default


class FakeDriver:
    """Records every frame drawn; `wait_frames` waits (bounded) for a number of them."""

    pixel_count = 3

    def __init__(self) -> None:
        self.frames: list[tuple[RGB, ...]] = []
        self.offs = 0
        self.closed = 0
        self._cond = threading.Condition()

    def show(self, pixels: Sequence[RGB]) -> None:
        with self._cond:
            self.frames.append(tuple(pixels))
            self._cond.notify_all()

    def off(self) -> None:
        self.offs += 1

    def close(self) -> None:
        self.closed += 1

    def wait_frames(self, count: int) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.frames) >= count, WAIT_S)


class FrameCatcher(MockSPIDevice):  # type: ignore[misc]
    """The LED side of SPI0: every transfer as bytes."""

    def __init__(self, factory: MockFactory) -> None:
        self.frames: list[bytes] = []
        super().__init__(11, 10, None, 8, pin_factory=factory)

    def on_select(self) -> None:
        super().on_select()
        if self.select_pin.state != self.select_high and self.rx_buf:
            bits = "".join(str(int(bit)) for bit in self.rx_buf)
            self.frames.append(bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)))


@pytest.fixture
def mock_factory() -> Iterator[MockFactory]:
    factory = MockFactory(pin_class=MockPWMPin)
    yield factory
    factory.reset()


@pytest.fixture
def spi_factory() -> Iterator[MockFactory]:
    factory = MockFactory()
    yield factory
    factory.reset()


def test_animator_draws_idle_then_each_change() -> None:
    driver = FakeDriver()
    with LedAnimator(driver, fps=FPS) as animator:
        assert animator.wait_shown("idle", WAIT_S)
        animator.set_pattern("muted")
        assert animator.wait_shown("muted", WAIT_S)
        assert animator.pattern == "muted"
    assert driver.frames == [PATTERNS["idle"].render(0, 3), PATTERNS["muted"].render(0, 3)]


def test_animator_draws_static_patterns_once() -> None:
    driver = FakeDriver()
    animator = LedAnimator(driver, fps=FPS)
    assert animator.wait_shown("idle", WAIT_S)
    animator.set_pattern("attentive")
    animator.set_pattern("attentive")
    assert animator.wait_shown("attentive", WAIT_S)
    animator.close()
    assert len(driver.frames) == 2


def test_animator_keeps_drawing_moving_patterns() -> None:
    driver = FakeDriver()
    with LedAnimator(driver, fps=50) as animator:
        animator.set_pattern("processing")
        assert driver.wait_frames(6)
    spins = {frame for frame in driver.frames[1:]}
    assert len(spins) > 1


def test_animator_close_turns_off_stops_the_thread_and_is_idempotent() -> None:
    driver = FakeDriver()
    animator = LedAnimator(driver, fps=FPS)
    animator.set_pattern("error")
    animator.close()
    animator.close()
    assert driver.offs == 1 and driver.closed == 1
    assert not any(thread.name == "leds" for thread in threading.enumerate())


def test_animator_rejects_unknown_patterns() -> None:
    with LedAnimator(NullLeds(), fps=FPS) as animator, pytest.raises(ValueError, match="rainbow"):
        animator.set_pattern("rainbow")


def test_animator_renders_a_change_on_the_mock_strip(spi_factory: MockFactory) -> None:
    with FrameCatcher(spi_factory) as catcher:
        strip = Apa102Strip(3, brightness=1.0, pin_factory=spi_factory)
        with LedAnimator(strip, fps=FPS) as animator:
            animator.set_pattern("muted")
            assert animator.wait_shown("muted", WAIT_S)
            assert catcher.frames[-1] == bytes(4) + bytes.fromhex("ff000099" * 3) + bytes(5)
        assert catcher.frames[-1] == apa102_frame([(0.0, 0.0, 0.0)] * 3, 1.0)
        assert strip.closed


def test_build_leds_none_has_no_hardware() -> None:
    with build_leds(LedSettings()) as animator:
        assert isinstance(animator.driver, NullLeds)


def test_build_leds_from_the_2mic_profile(spi_factory: MockFactory) -> None:
    with FrameCatcher(spi_factory) as catcher:
        settings = LedSettings(hats_dir=HATS_DIR, hat="respeaker-2mic", brightness=1.0)
        with build_leds(settings, pin_factory=spi_factory) as animator:
            assert isinstance(animator.driver, Apa102Strip)
            assert animator.driver.pixel_count == 3
            animator.set_pattern("wake_detected")
            assert animator.wait_shown("wake_detected", WAIT_S)
            assert catcher.frames[-1] == bytes(4) + b"\xff" * 12 + bytes(5)


def test_build_leds_from_the_4mic_profile_powers_the_leds(spi_factory: MockFactory) -> None:
    with build_leds(
        LedSettings(hats_dir=HATS_DIR, hat="respeaker-4mic"), pin_factory=spi_factory
    ) as animator:
        assert isinstance(animator.driver, Apa102Strip)
        assert animator.driver.pixel_count == 12
        assert spi_factory.pin(5).state is True
    assert spi_factory.pin(5).state is False


def test_build_leds_from_the_gpio_profile_with_overrides(mock_factory: MockFactory) -> None:
    settings = LedSettings(hats_dir=HATS_DIR, hat="gpio-led", pins=[22], brightness=0.25)
    with build_leds(settings, pin_factory=mock_factory) as animator:
        assert isinstance(animator.driver, SingleLed)
        animator.set_pattern("wake_detected")
        assert animator.wait_shown("wake_detected", WAIT_S)
        assert mock_factory.pin(22).state == pytest.approx(0.25)


def test_build_leds_rgb_without_a_profile(mock_factory: MockFactory) -> None:
    settings = LedSettings(driver="rgb", pins=[5, 6, 13], brightness=1.0)
    with build_leds(settings, pin_factory=mock_factory) as animator:
        animator.set_pattern("muted")
        assert animator.wait_shown("muted", WAIT_S)
        assert [mock_factory.pin(p).state for p in (5, 6, 13)] == pytest.approx([0.6, 0, 0])


def test_build_leds_pin_in_use_is_an_accessory_error(mock_factory: MockFactory) -> None:
    with (
        DigitalOutputDevice(27, pin_factory=mock_factory),
        pytest.raises(AccessoryError) as info,
    ):
        build_leds(LedSettings(hats_dir=HATS_DIR, hat="gpio-led"), pin_factory=mock_factory)
    assert "cannot open the single LEDs" in str(info.value)


def test_build_leds_unknown_hat_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="known: none"):
        build_leds(LedSettings(hat="respeaker-9mic", hats_dir=tmp_path))


def test_build_indicator_applies_the_room_settings() -> None:
    now = [0.0]
    settings = LedSettings(
        patterns={"thinking": "processing"},
        default_pattern="idle",
        timeouts={"processing": 3.0},
    )
    indicator = build_indicator(settings, now=lambda: now[0])
    indicator.show("thinking")
    assert indicator.tick() == "processing"
    now[0] = 3.0
    assert indicator.tick() == "idle"
    indicator.show("never_heard_of")
    assert indicator.tick() == "idle"


def test_cycle_patterns_shows_every_pattern_then_idle() -> None:
    driver = FakeDriver()
    steps: list[str] = []
    waits: list[float] = []
    with LedAnimator(driver, fps=FPS) as animator:
        shown = cycle_patterns(animator, 0.5, steps.append, wait=waits.append)
        assert animator.pattern == "idle"
    assert shown == steps == list(PATTERNS)
    assert waits == [0.5] * len(PATTERNS)
