"""Loading and validating the room configuration: TOML file, defaults, environment overrides."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from satellite.config import (
    EX_CONFIG,
    MqttSettings,
    check_topic_level,
    default_satellite_id,
    load_settings,
)
from satellite.errors import ConfigError, SatelliteError

EXAMPLE = """\
room_id = "salon"
[mqtt]
host = "127.0.0.1"
port = 1883
[audio]
device = "fifomic"        # ALSA PCM name, a substring of a device name, or an index
[wake]
models = ["hey_jarvis"]   # built-in names or paths to .onnx files
threshold = 0.5
[models]
dir = "/var/lib/satellite/models"   # also SATELLITE_MODELS_DIR
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No override from the environment running the tests leaks into them."""
    for name in os.environ:
        if name.startswith(("SATELLITE_", "MQTT_")):
            monkeypatch.delenv(name)


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "room.toml"
    path.write_text(body, encoding="utf-8")
    return path


def config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_example_config_loads(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, EXAMPLE))
    assert settings.room_id == "salon"
    assert settings.mqtt.host == "127.0.0.1"
    assert settings.mqtt.port == 1883
    assert settings.audio.device == "fifomic"
    assert settings.wake.models == ["hey_jarvis"]
    assert settings.wake.threshold == 0.5
    assert settings.models.dir == Path("/var/lib/satellite/models")


def test_defaults_fill_everything_but_room_id(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, 'room_id = "salon"\n'))
    assert settings.mqtt.host == "127.0.0.1"
    assert settings.mqtt.port == 1883
    assert settings.mqtt.topic_version == "v1"
    assert settings.mqtt.base_prefix == "voice_assistant"
    assert settings.mqtt.dual_publish is False
    assert settings.mqtt.tls is False
    assert settings.mqtt.password_file is None
    assert settings.audio.channels == 1
    assert settings.audio.channel == 0
    assert settings.wake.models == ["hey_jarvis"]
    assert settings.wake.threshold == 0.4
    assert settings.stt.model == "vosk-model-small-en-us-0.15"
    assert settings.models.dir == Path("/var/lib/satellite/models")
    assert check_topic_level(settings.satellite_id) == settings.satellite_id
    assert settings.satellite_id == default_satellite_id()


def machine_id(tmp_path: Path, text: str) -> Path:
    path = tmp_path / f"machine-id-{text.strip()}"
    path.write_text(text)
    return path


def test_default_satellite_id_differs_between_machines_with_the_same_host_name(
    tmp_path: Path,
) -> None:
    first = default_satellite_id("raspberrypi", machine_id(tmp_path, "0123456789abcdef" * 2))
    second = default_satellite_id("raspberrypi", machine_id(tmp_path, "fedcba9876543210" * 2))
    assert first.startswith("raspberrypi-") and second.startswith("raspberrypi-")
    assert first != second
    assert len(first) == len("raspberrypi-") + 6
    assert check_topic_level(first) == first


def test_default_satellite_id_is_stable_and_does_not_publish_the_machine_id(
    tmp_path: Path,
) -> None:
    path = machine_id(tmp_path, "3d1219c7c4c5404aaa1f6d2a48adfda4\n")
    satellite_id = default_satellite_id("pi", path)
    assert satellite_id == default_satellite_id("pi", path)
    # sha256("satellite-id:" + machine id), as install.sh computes it with sha256sum.
    assert satellite_id == "pi-28d8d9"
    assert "3d1219" not in satellite_id


@pytest.mark.parametrize("text", [None, "", "uninitialized\n", "not-hex" * 5, "\xff\xfe"])
def test_default_satellite_id_is_the_host_name_without_a_machine_id(
    tmp_path: Path, text: str | None
) -> None:
    path = tmp_path / "machine-id"
    if text is not None:
        path.write_bytes(text.encode("latin-1"))
    assert default_satellite_id("kitchen pi/2", path) == "kitchen-pi-2"


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, EXAMPLE))
    with pytest.raises(ValueError, match="frozen"):
        settings.mqtt.port = 1  # type: ignore[misc]


def test_env_empty_topic_version_selects_legacy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MQTT_TOPIC_VERSION", "")
    assert load_settings(write(tmp_path, EXAMPLE)).mqtt.topic_version == ""


def test_env_topic_version_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MQTT_TOPIC_VERSION", "v2")
    path = write(tmp_path, EXAMPLE.replace("[mqtt]", '[mqtt]\ntopic_version = "v1"'))
    assert load_settings(path).mqtt.topic_version == "v2"


def test_env_base_prefix_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MQTT_BASE_PREFIX", "from_env")
    path = write(tmp_path, EXAMPLE.replace("[mqtt]", '[mqtt]\nbase_prefix = "from_file"'))
    assert load_settings(path).mqtt.base_prefix == "from_env"


def test_env_models_dir_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SATELLITE_MODELS_DIR", str(tmp_path / "models"))
    assert load_settings(write(tmp_path, EXAMPLE)).models.dir == tmp_path / "models"


def test_env_nested_port_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SATELLITE_MQTT__PORT", "1999")
    settings = load_settings(write(tmp_path, EXAMPLE))
    assert settings.mqtt.port == 1999
    assert settings.mqtt.host == "127.0.0.1"  # the rest of the file's section is kept


def test_env_room_id_without_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SATELLITE_ROOM_ID", "kitchen")
    assert load_settings(None).room_id == "kitchen"


def test_env_value_is_validated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MQTT_BASE_PREFIX", "a/b")
    assert "mqtt.base_prefix" in config_error(write(tmp_path, EXAMPLE))


def test_env_wrong_type_is_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SATELLITE_MQTT__PORT", "x")
    assert "mqtt.port" in config_error(write(tmp_path, EXAMPLE))


def test_unknown_top_level_key_is_error(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, 'colour = "red"\n' + EXAMPLE))
    assert "colour: unknown key" in message


def test_unknown_section_key_is_error(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, EXAMPLE.replace("[mqtt]", "[mqtt]\nhostname = 'x'")))
    assert "mqtt.hostname: unknown key" in message


def test_unknown_section_is_error(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, EXAMPLE + "[lights]\nkind = 'apa102'\n"))
    assert "lights: unknown key" in message


def test_wrong_type_is_error(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, EXAMPLE.replace("port = 1883", 'port = "x"')))
    assert "mqtt.port:" in message
    assert "integer" in message


def test_port_out_of_range_is_error(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, EXAMPLE.replace("port = 1883", "port = 70000")))
    assert "mqtt.port:" in message
    assert "65535" in message


def test_threshold_out_of_range_is_error(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, EXAMPLE.replace("threshold = 0.5", "threshold = 1.5")))
    assert "wake.threshold:" in message
    assert "less than 1" in message


def test_missing_room_id_is_error(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, EXAMPLE.replace('room_id = "salon"\n', "")))
    assert "room_id: required but missing" in message


@pytest.mark.parametrize("room_id", ["a/b", "salon#", "sal+on", "nul\\u0000"])
def test_room_id_not_one_topic_level_is_error(tmp_path: Path, room_id: str) -> None:
    body = EXAMPLE.replace('room_id = "salon"', f'room_id = "{room_id}"')
    message = config_error(write(tmp_path, body))
    assert "room_id:" in message
    assert "must not contain" in message


def test_empty_room_id_is_error(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, EXAMPLE.replace('"salon"', '""')))
    assert "room_id:" in message
    assert "empty" in message


def test_invalid_toml_is_error(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, "room_id = \n[mqtt\n"))
    assert "invalid TOML" in message


def test_missing_file_is_error(tmp_path: Path) -> None:
    message = config_error(tmp_path / "absent.toml")
    assert "not found" in message


def test_channel_beyond_channels_is_error(tmp_path: Path) -> None:
    body = EXAMPLE.replace("[audio]", "[audio]\nchannels = 2\nchannel = 2")
    message = config_error(write(tmp_path, body))
    assert "audio:" in message
    assert "channel 2" in message


def test_channel_within_channels_loads(tmp_path: Path) -> None:
    body = EXAMPLE.replace("[audio]", "[audio]\nchannels = 2\nchannel = 1")
    audio = load_settings(write(tmp_path, body)).audio
    assert (audio.channels, audio.channel) == (2, 1)


def test_several_errors_are_reported_on_one_line(tmp_path: Path) -> None:
    body = EXAMPLE.replace("port = 1883", "port = 0").replace("threshold = 0.5", "threshold = 0")
    message = config_error(write(tmp_path, body))
    assert "mqtt.port" in message
    assert "wake.threshold" in message


def test_config_error_is_a_satellite_error_and_exit_code_is_ex_config() -> None:
    assert issubclass(ConfigError, SatelliteError)
    assert EX_CONFIG == 78


def test_password_file_is_read_and_stripped(tmp_path: Path) -> None:
    secret = tmp_path / "mqtt.pass"
    secret.write_text("s3cret\n", encoding="utf-8")
    body = EXAMPLE.replace("[mqtt]", f'[mqtt]\nusername = "pi"\npassword_file = "{secret}"')
    settings = load_settings(write(tmp_path, body))
    assert settings.mqtt.read_password() == "s3cret"


def test_no_password_file_means_no_password() -> None:
    assert MqttSettings().read_password() is None


@pytest.mark.parametrize("name", ["absent.pass", "a_directory"])
def test_unreadable_password_file_is_config_error(tmp_path: Path, name: str) -> None:
    (tmp_path / "a_directory").mkdir()
    mqtt = MqttSettings(password_file=tmp_path / name)
    with pytest.raises(ConfigError) as info:
        mqtt.read_password()
    message = str(info.value)
    assert "\n" not in message
    assert "mqtt.password_file" in message
    assert str(tmp_path / name) in message


def test_settings_reject_bad_backoff_order() -> None:
    with pytest.raises(ValueError, match="reconnect_max_s"):
        MqttSettings(reconnect_min_s=10, reconnect_max_s=1)


def test_stt_phrases_default_to_free_dictation(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, EXAMPLE)).stt.phrases == []


def test_stt_phrases_are_lowercased_and_single_spaced(tmp_path: Path) -> None:
    body = EXAMPLE + '[stt]\nphrases = ["  Turn ON\\tthe  Kitchen Lights ", "stop"]\n'
    settings = load_settings(write(tmp_path, body))
    assert settings.stt.phrases == ["turn on the kitchen lights", "stop"]


def test_stt_phrases_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SATELLITE_STT__PHRASES", '["Play Some Music"]')
    assert load_settings(write(tmp_path, EXAMPLE)).stt.phrases == ["play some music"]


def test_a_blank_stt_phrase_is_error(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, EXAMPLE + '[stt]\nphrases = ["stop", "   "]\n'))
    assert "stt" in message and "phrases: entry 2 is blank" in message


@pytest.mark.parametrize("value", ['"stop"', "[3]"])
def test_stt_phrases_must_be_a_list_of_strings(tmp_path: Path, value: str) -> None:
    assert "stt.phrases" in config_error(write(tmp_path, EXAMPLE + f"[stt]\nphrases = {value}\n"))
