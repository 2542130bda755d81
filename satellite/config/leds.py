"""LED and button settings, and the names of the LED patterns a room's file may use."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from satellite.config.base import Section

PATTERN_NAMES: tuple[str, ...] = (
    "idle",
    "wake_detected",
    "listening",
    "processing",
    "responding",
    "attentive",
    "muted",
    "error",
    "offline",
    "unknown",
)
"""Every LED pattern, in the order `satellite led-test` shows them (satellite.leds.patterns
draws each one; tests/test_leds_patterns.py checks that both agree)."""


def check_pattern(name: str) -> str:
    """`name` if it is a known pattern, else ValueError listing the known ones."""
    if name not in PATTERN_NAMES:
        raise ValueError(f"unknown LED pattern {name!r}; known: {', '.join(PATTERN_NAMES)}")
    return name


def _check_pattern_names(value: dict[str, str]) -> dict[str, str]:
    for name in value.values():
        check_pattern(name)
    return value


def _check_timeout_keys(value: dict[str, float]) -> dict[str, float]:
    for name in value:
        check_pattern(name)
    return value


PatternName = Annotated[str, AfterValidator(check_pattern)]
Seconds = Annotated[float, Field(gt=0, le=86400)]


class LedSettings(Section):
    """Status LEDs: the board (a HAT profile, plus overrides) and the pattern for each state."""

    hat: str = Field(
        "none", description="HAT profile name in hats_dir (respeaker-2mic, …), or none"
    )
    hats_dir: Path = Field(
        Path("/usr/share/satellite/hats"),
        description="HAT profile directory (install.sh puts the profiles there; a source "
        "checkout has them in firmware-config/hats)",
    )
    driver: Literal["apa102", "rgb", "single", "none"] | None = Field(
        None, description="overrides the profile's LED driver"
    )
    pins: list[Annotated[int, Field(ge=0, le=27)]] | None = Field(
        None, description="BCM GPIO numbers: one for single, red/green/blue for rgb"
    )
    pixels: int | None = Field(None, ge=1, le=1024, description="APA102 pixel count")
    spi_device: int | None = Field(None, ge=0, le=2, description="APA102 SPI chip select")
    active_high: bool | None = Field(
        None, description="single/rgb: LED lights when the pin is high; unset: the profile's"
    )
    brightness: float = Field(
        0.5, ge=0, le=1, description="overall brightness, 0..1 (PWM duty or APA102 current)"
    )
    fps: float = Field(20.0, ge=1, le=60, description="frame rate of moving patterns, per second")
    patterns: Annotated[dict[str, str], AfterValidator(_check_pattern_names)] = Field(
        default_factory=dict, description="state -> pattern name, over the defaults"
    )
    default_pattern: PatternName = Field(
        "unknown", description="pattern for states with no mapping (unknown gateway states)"
    )
    timeouts: Annotated[dict[str, Seconds], AfterValidator(_check_timeout_keys)] = Field(
        default_factory=dict, description="pattern name -> seconds before idle shows again"
    )
    timeout_s: Seconds = Field(
        120.0, description="ceiling: no session pattern lasts longer without a new state, seconds"
    )


class ButtonSettings(Section):
    """The mute button."""

    enabled: bool | None = Field(
        None, description="unset: on when the HAT profile has a button (satellite.leds)"
    )
    pin: int = Field(17, ge=0, le=27, description="BCM GPIO number; unset: the HAT's, else 17")
    pull_up: bool = Field(True, description="pressed pulls the pin low (to ground)")
    bounce_s: float = Field(0.05, ge=0, le=2, description="debounce time, seconds")
