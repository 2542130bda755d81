"""HAT profiles: which LED driver, pins and button a board has, one TOML file per board."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from satellite.errors import ConfigError

NO_HAT = "none"

_PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

DriverName = Literal["apa102", "rgb", "single", "none"]
GpioPin = Annotated[int, Field(ge=0, le=27, description="BCM GPIO number (40-pin header)")]
_PINS_PER_DRIVER = {"single": 1, "rgb": 3}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HatLeds(_Strict):
    """The LEDs of a board: which driver, on which pins or SPI port."""

    driver: DriverName
    pixels: int = Field(1, ge=1, le=1024, description="APA102 pixel count")
    pins: list[GpioPin] = Field(
        default_factory=list, description="BCM GPIO numbers: one for single, R, G, B for rgb"
    )
    pwm: bool = Field(True, description="single LED: dim by PWM (else on/off)")
    active_high: bool = Field(True, description="single/rgb: the LED lights when the pin is high")
    spi_port: int = Field(0, ge=0, le=6, description="APA102: SPI port (0 = SPI0)")
    spi_device: int = Field(0, ge=0, le=2, description="APA102: SPI chip select (CE0, CE1…)")
    enable_pin: GpioPin | None = Field(None, description="APA102: pin switching the LEDs' power")
    enable_active_high: bool = Field(True, description="the LEDs are powered when it is high")

    @model_validator(mode="after")
    def _check_pins(self) -> HatLeds:
        wanted = _PINS_PER_DRIVER.get(self.driver)
        if wanted is not None and len(self.pins) != wanted:
            raise ValueError(f"driver {self.driver!r} needs {wanted} pin(s) in `pins`")
        return self


class HatButton(_Strict):
    """A push button on the board."""

    pin: GpioPin
    pull_up: bool = Field(True, description="pressed pulls the pin low")


class HatProfile(_Strict):
    """One board's LED and button wiring."""

    name: str
    description: str = ""
    leds: HatLeds
    button: HatButton | None = None


def available_hats(dirs: Sequence[Path]) -> list[str]:
    """The profile names found in `dirs`, plus `none`, sorted."""
    names = {path.stem for folder in dirs if folder.is_dir() for path in folder.glob("*.toml")}
    return sorted(names | {NO_HAT})


def load_hat(name: str, hats_dir: Path) -> HatProfile:
    """The profile called `name` in `hats_dir` (the setting leds.hats_dir; `none`: no LEDs, no
    button); ConfigError if unknown or invalid."""
    if name == NO_HAT:
        return HatProfile(name=NO_HAT, description="no LEDs", leds=HatLeds(driver="none"))
    dirs = (hats_dir,)
    path = _find(name, dirs)
    if path is None:
        where = ", ".join(str(folder) for folder in dirs)
        known = ", ".join(available_hats(dirs))
        raise ConfigError(f"leds.hat: unknown HAT profile {name!r} (in {where}); known: {known}")
    return _parse(name, path)


def _find(name: str, dirs: Sequence[Path]) -> Path | None:
    if not _PROFILE_NAME.match(name):
        return None
    return next(
        (folder / f"{name}.toml" for folder in dirs if (folder / f"{name}.toml").is_file()), None
    )


def _parse(name: str, path: Path) -> HatProfile:
    try:
        with path.open("rb") as handle:
            data: dict[str, Any] = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    try:
        return HatProfile.model_validate({**data, "name": name})
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe(exc)}") from exc


def describe(exc: ValidationError) -> str:
    """A validation error on one line: `field: reason; field: reason`."""
    return "; ".join(
        f"{'.'.join(str(part) for part in err['loc']) or '(top level)'}: {err['msg']}"
        for err in exc.errors()
    )
