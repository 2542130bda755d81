"""The generated configuration reference stays current; the effective config masks secrets."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from pydantic import Field

from satellite.commands.config_doc import (
    MASK,
    config_keys,
    render_effective,
    render_reference,
    value_sources,
)
from satellite.config import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "configuration.md"


def config_doc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "satellite", "config", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_committed_reference_matches_the_model() -> None:
    assert REFERENCE.read_text(encoding="utf-8") == render_reference(), (
        "docs/configuration.md is stale: run `satellite config --write docs/configuration.md`"
    )


def test_a_new_field_changes_the_reference() -> None:
    class Extended(Settings):
        volume_db: float = Field(-3.0, le=0, description="playback gain")

    text = render_reference(Extended)
    assert text != render_reference()
    row = "| `volume_db` | number (<= 0) | `-3.0` |  | `SATELLITE_VOLUME_DB` | playback gain |"
    assert row in text


def test_check_exits_1_when_stale_and_0_when_current(tmp_path: Path) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text(render_reference().replace("`mqtt.port`", "`mqtt.prot`"))
    done = config_doc("--check", str(stale))
    assert done.returncode == 1
    assert f"--write {stale}" in done.stdout
    assert config_doc("--check", str(REFERENCE)).returncode == 0


def test_every_key_has_a_row_with_its_env_names() -> None:
    text = render_reference()
    for key in config_keys():
        row = next(line for line in text.splitlines() if line.startswith(f"| `{key.dotted}` |"))
        for name in key.env_names:
            assert f"`{name}`" in row


def test_env_names_are_the_ones_pydantic_settings_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = {key.dotted: key for key in config_keys()}
    assert keys["mqtt.port"].env_names == ["SATELLITE_MQTT__PORT"]
    assert keys["mqtt.topic_version"].env_names[0] == "MQTT_TOPIC_VERSION"
    assert keys["state_dir"].env_names == ["STATE_DIRECTORY", "SATELLITE_STATE_DIR"]
    for dotted, value in (("mqtt.port", "1884"), ("audio.device", "hw:1"), ("room_id", "hall")):
        for name in keys[dotted].env_names:
            monkeypatch.setenv(name, value)
    monkeypatch.setenv(keys["models.dir"].env_names[0], "/srv/models")
    settings = load_settings(None)
    assert (settings.mqtt.port, settings.audio.device) == (1884, "hw:1")
    assert (settings.room_id, str(settings.models.dir)) == ("hall", "/srv/models")


def test_effective_config_loads_back_to_the_same_settings(tmp_path: Path) -> None:
    settings = Settings(
        room_id="salon",
        satellite_id="pi",
        mqtt={"port": 1884, "topic_version": ""},
        wake={"models": ["hey_jarvis", "alexa"]},
        leds={"patterns": {"wake detected": "listening"}, "timeouts": {"listening": 5.0}},
    )
    text = render_effective(settings)
    assert Settings(**tomllib.loads(text)) == settings


def test_effective_config_shows_the_password_file_never_its_content(tmp_path: Path) -> None:
    secret = tmp_path / "salon.password"
    secret.write_text("hunter2\n")
    settings = Settings(room_id="salon", mqtt={"username": "u", "password_file": secret})
    sources = value_sources({"mqtt": {"password_file": str(secret)}}, {})
    text = render_effective(settings, sources=sources)
    assert f'password_file = "{secret}"  # file' in text
    assert "hunter2" not in text


def test_effective_config_masks_fields_named_like_secrets() -> None:
    class WithSecrets(Settings):
        api_token: str = "t0ken-value"
        client_secret: str | None = None

    text = render_effective(WithSecrets(room_id="salon"))
    assert f'api_token = "{MASK}"' in text and "t0ken-value" not in text
    assert "# client_secret is unset" in text


def test_config_show_names_each_source(tmp_path: Path) -> None:
    config = tmp_path / "salon.toml"
    config.write_text('room_id = "salon"\n[audio]\ndevice = "fifomic"\n')
    done = subprocess.run(
        [sys.executable, "-m", "satellite", "config", "--show", "--config", str(config)],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "SATELLITE_MQTT__PORT": "1884", "MQTT_BASE_PREFIX": "va"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert 'device = "fifomic"  # file' in lines
    assert "port = 1884  # env SATELLITE_MQTT__PORT" in lines
    assert 'base_prefix = "va"  # env MQTT_BASE_PREFIX' in lines
    assert 'host = "127.0.0.1"  # default' in lines
