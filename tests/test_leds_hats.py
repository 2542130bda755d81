"""HAT profiles (firmware-config/hats), the [leds]/[button] config, and how they combine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from satellite.config import ButtonSettings, LedSettings, Settings, load_settings
from satellite.errors import ConfigError
from satellite.leds import resolve_button, resolve_leds
from satellite.leds.hats import available_hats, load_hat
from tests.support.satellite_proc import HATS_DIR

ROOMS_DIR = HATS_DIR.parent / "rooms"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in os.environ:
        if name.startswith(("SATELLITE_", "MQTT_")):
            monkeypatch.delenv(name)


def write_profile(folder: Path, name: str, body: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(body, encoding="utf-8")
    return path


def test_hats_the_checkout_ships_the_profiles_and_the_setting_names_where_installed() -> None:
    assert LedSettings().hats_dir == Path("/usr/share/satellite/hats")  # where install.sh puts them
    shipped = sorted(path.stem for path in HATS_DIR.glob("*.toml"))
    assert shipped == ["gpio-led", "respeaker-2mic", "respeaker-4mic"]
    assert available_hats([HATS_DIR]) == sorted(["none", *shipped])


def test_hats_respeaker_2mic() -> None:
    hat = load_hat("respeaker-2mic", HATS_DIR)
    assert (hat.leds.driver, hat.leds.pixels) == ("apa102", 3)
    assert (hat.leds.spi_port, hat.leds.spi_device, hat.leds.enable_pin) == (0, 0, None)
    assert hat.button is not None and (hat.button.pin, hat.button.pull_up) == (17, True)


def test_hats_respeaker_4mic() -> None:
    hat = load_hat("respeaker-4mic", HATS_DIR)
    assert (hat.leds.driver, hat.leds.pixels) == ("apa102", 12)
    assert (hat.leds.enable_pin, hat.leds.enable_active_high) == (5, True)
    assert hat.button is None


def test_hats_gpio_led() -> None:
    hat = load_hat("gpio-led", HATS_DIR)
    assert (hat.leds.driver, hat.leds.pins, hat.leds.pwm) == ("single", [27], True)
    assert hat.button is not None and hat.button.pin == 17


def test_hats_none_needs_no_file(tmp_path: Path) -> None:
    hat = load_hat("none", tmp_path)
    assert hat.leds.driver == "none" and hat.button is None


def test_hats_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        load_hat("respeaker-6mic", HATS_DIR)
    message = str(info.value)
    assert "unknown HAT profile 'respeaker-6mic'" in message
    assert "known: gpio-led, none, respeaker-2mic, respeaker-4mic" in message


def test_hats_names_are_not_paths(tmp_path: Path) -> None:
    write_profile(tmp_path, "evil", '[leds]\ndriver = "none"\n')
    with pytest.raises(ConfigError, match="unknown HAT profile"):
        load_hat("../" + tmp_path.name + "/evil", tmp_path / "sub")


def test_hats_dir_from_config(tmp_path: Path) -> None:
    write_profile(tmp_path, "desk", '[leds]\ndriver = "rgb"\npins = [5, 6, 13]\n')
    hat = load_hat("desk", tmp_path)
    assert hat.name == "desk" and hat.leds.pins == [5, 6, 13]
    with pytest.raises(ConfigError, match="known: desk, none"):
        load_hat("respeaker-2mic", tmp_path)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('[leds]\ndriver = "rgb"\npins = [5]\n', "needs 3 pin(s)"),
        ('[leds]\ndriver = "apa102"\npixels = 0\n', "leds.pixels"),
        ('[leds]\ndriver = "laser"\n', "leds.driver"),
        ('[leds]\ndriver = "none"\ncolour = "red"\n', "leds.colour"),
        ('[leds]\ndriver = "single"\npins = [40]\n', "leds.pins.0"),
        ("[button]\npin = 17\n", "leds: Field required"),
        ("[leds\n", "invalid TOML"),
    ],
)
def test_hats_invalid_profiles_name_the_file_and_field(
    tmp_path: Path, body: str, reason: str
) -> None:
    path = write_profile(tmp_path, "broken", body)
    with pytest.raises(ConfigError) as info:
        load_hat("broken", tmp_path)
    message = str(info.value)
    assert message.startswith(str(path)) and reason in message and "\n" not in message


def test_config_led_defaults_are_safe_without_leds() -> None:
    settings = Settings(room_id="salon")
    assert settings.leds.hat == "none"
    assert settings.leds.brightness == 0.5
    assert settings.leds.patterns == {} and settings.leds.timeouts == {}
    assert settings.button.enabled is None and settings.button.pin == 17
    assert resolve_leds(settings.leds).driver == "none"
    assert resolve_button(settings.leds, settings.button).enabled is False


def test_config_leds_and_button_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "room.toml"
    path.write_text(
        'room_id = "salon"\n'
        "[leds]\n"
        'hat = "respeaker-2mic"\n'
        f'hats_dir = "{HATS_DIR}"\n'
        "brightness = 0.2\n"
        'patterns = { thinking = "processing", responding = "listening" }\n'
        "timeouts = { processing = 5.0 }\n"
        "timeout_s = 60\n"
        "[button]\n"
        "pin = 22\n"
        "bounce_s = 0.1\n",
        encoding="utf-8",
    )
    settings = load_settings(path)
    assert settings.leds.patterns == {"thinking": "processing", "responding": "listening"}
    assert settings.leds.timeouts == {"processing": 5.0}
    button = resolve_button(settings.leds, settings.button)
    assert (button.enabled, button.pin, button.bounce_s) == (True, 22, 0.1)


@pytest.mark.parametrize(
    ("section", "reason"),
    [
        ('patterns = { processing = "rainbow" }', "unknown LED pattern 'rainbow'"),
        ("timeouts = { rainbow = 3.0 }", "unknown LED pattern 'rainbow'"),
        ("timeouts = { processing = 0 }", "leds.timeouts.processing"),
        ('default_pattern = "disco"', "leds.default_pattern"),
        ("brightness = 1.5", "leds.brightness"),
        ("pins = [99]", "leds.pins.0"),
        ('driver = "neopixel"', "leds.driver"),
        ('kind = "apa102"', "leds.kind: unknown key"),
    ],
)
def test_config_led_errors_name_the_field(tmp_path: Path, section: str, reason: str) -> None:
    path = tmp_path / "room.toml"
    path.write_text(f'room_id = "salon"\n[leds]\n{section}\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert reason in str(info.value) and str(path) in str(info.value)


def test_config_leds_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SATELLITE_LEDS__HAT", "respeaker-4mic")
    monkeypatch.setenv("SATELLITE_LEDS__HATS_DIR", str(HATS_DIR))
    monkeypatch.setenv("SATELLITE_BUTTON__ENABLED", "false")
    settings = Settings(room_id="salon")
    assert settings.leds.hat == "respeaker-4mic" and settings.button.enabled is False


def test_resolve_leds_overrides_the_profile() -> None:
    leds = resolve_leds(
        LedSettings(hats_dir=HATS_DIR, hat="respeaker-2mic", pixels=5, spi_device=1)
    )
    assert (leds.driver, leds.pixels, leds.spi_device) == ("apa102", 5, 1)
    single = resolve_leds(
        LedSettings(hats_dir=HATS_DIR, driver="single", pins=[18], active_high=False)
    )
    assert (single.driver, single.pins, single.active_high) == ("single", [18], False)


def test_resolve_leds_rejects_an_incomplete_override() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_leds(LedSettings(hats_dir=HATS_DIR, hat="gpio-led", driver="rgb"))
    assert "needs 3 pin(s)" in str(info.value) and "\n" not in str(info.value)


def test_resolve_button_takes_the_hats_button_unless_configured() -> None:
    two_mic, four_mic = (
        LedSettings(hats_dir=HATS_DIR, hat="respeaker-2mic"),
        LedSettings(hats_dir=HATS_DIR, hat="respeaker-4mic"),
    )
    assert resolve_button(two_mic, ButtonSettings()) == ButtonSettings(enabled=True, pin=17)
    assert resolve_button(four_mic, ButtonSettings()).enabled is False
    assert resolve_button(four_mic, ButtonSettings(enabled=True, pin=6)).pin == 6
    assert resolve_button(two_mic, ButtonSettings(enabled=False)).enabled is False
    assert resolve_button(LedSettings(), ButtonSettings(enabled=True)).pin == 17


@pytest.mark.parametrize("room", sorted(path.name for path in ROOMS_DIR.glob("*.toml")))
def test_example_rooms_name_existing_profiles(room: str) -> None:
    leds = load_settings(ROOMS_DIR / room).leds.model_copy(update={"hats_dir": HATS_DIR})
    assert resolve_leds(leds).driver in {"apa102", "single", "rgb", "none"}
