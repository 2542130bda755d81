"""The whole configuration of one room: the sections, the satellite's identity, the
environment overrides, and loading the room's TOML file with errors that name the field."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from satellite.config.audio import (
    AudioSettings,
    FollowupSettings,
    ModelsSettings,
    SttSettings,
    WakeSettings,
)
from satellite.config.leds import ButtonSettings, LedSettings
from satellite.config.mqtt import ArbitrationSettings, MqttSettings, TopicLevel
from satellite.errors import ConfigError

EX_CONFIG = 78


MACHINE_ID_FILE = Path("/etc/machine-id")
_MACHINE_ID = re.compile(r"[0-9a-f]{32}")


def default_satellite_id(host: str | None = None, machine_id_file: Path = MACHINE_ID_FILE) -> str:
    """The host name and 6 hex of a hash of the machine id: differs between machines even when
    their host names are equal; the host name alone when there is no machine id to read.

    Hashed with our own prefix because machine-id(5) asks applications not to publish the id
    itself. install.sh computes the same value for the configs it writes.
    """
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname() if host is None else host)
    name = name or "satellite"
    machine_id = _read_machine_id(machine_id_file)
    if machine_id is None:
        return name
    digest = hashlib.sha256(f"satellite-id:{machine_id}".encode()).hexdigest()
    return f"{name}-{digest[:6]}"


def _read_machine_id(path: Path) -> str | None:
    # Absent, empty or "uninitialized" (an image before its first boot): no machine id yet.
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if _MACHINE_ID.fullmatch(text) else None


class Settings(BaseSettings):
    """The whole configuration of one room's satellite."""

    model_config = SettingsConfigDict(
        extra="forbid", frozen=True, env_prefix="SATELLITE_", env_nested_delimiter="__"
    )

    room_id: TopicLevel = Field(description="the room: one MQTT topic level, required")
    satellite_id: TopicLevel = Field(
        default_factory=default_satellite_id,
        description="this satellite within the room, unique per machine (its MQTT client id "
        "and status topic): one topic level; default the host name and 6 hex of a hash of "
        "/etc/machine-id",
    )
    mqtt: MqttSettings = MqttSettings()
    audio: AudioSettings = AudioSettings()
    wake: WakeSettings = WakeSettings()
    stt: SttSettings = SttSettings()
    models: ModelsSettings = ModelsSettings()
    followup: FollowupSettings = FollowupSettings()
    leds: LedSettings = LedSettings()
    button: ButtonSettings = ButtonSettings()
    arbitration: ArbitrationSettings = ArbitrationSettings()
    state_dir: Path = Field(
        Path("/var/lib/satellite"),
        description="where mute survives restarts (systemd's STATE_DIRECTORY when set)",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment wins over the file, which `load_settings` passes in as init values at
        # the lowest priority through `_FileSource`.
        return (_AliasEnvSource(settings_cls), env_settings, init_settings)


# Environment names fixed by the wider assistant (DESIGN.md), outside the SATELLITE_ prefix,
# plus the documented short form SATELLITE_MODELS_DIR.
ENV_ALIASES: Mapping[str, tuple[str, ...]] = {
    "MQTT_TOPIC_VERSION": ("mqtt", "topic_version"),
    "MQTT_BASE_PREFIX": ("mqtt", "base_prefix"),
    "SATELLITE_MODELS_DIR": ("models", "dir"),
    "STATE_DIRECTORY": ("state_dir",),
}


class _AliasEnvSource(PydanticBaseSettingsSource):
    """Maps the fixed environment names of ENV_ALIASES onto nested fields."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, path in ENV_ALIASES.items():
            if name not in os.environ:
                continue
            target = values
            for part in path[:-1]:
                target = target.setdefault(part, {})
            # systemd may list several directories (colon-separated); the first is ours.
            value = os.environ[name]
            target[path[-1]] = value.split(":")[0] if name == "STATE_DIRECTORY" else value
        return values


def read_toml(path: Path) -> dict[str, Any]:
    """The parsed TOML file, or a ConfigError naming the file and the reason."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc


def _describe(error: Mapping[str, Any]) -> str:
    field = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{field}: unknown key"
    if error["type"] == "missing":
        return f"{field}: required but missing"
    return f"{field}: {error['msg']}"


def load_settings(path: Path | None) -> Settings:
    """Settings from `path` (optional) and the environment; ConfigError on any problem."""
    data = read_toml(path) if path is not None else {}
    source = str(path) if path is not None else "environment"
    try:
        return Settings(**data)
    except ValidationError as exc:
        reasons = "; ".join(_describe(err) for err in exc.errors())
        raise ConfigError(f"{source}: {reasons}") from exc


def warn_insecure_files(settings: Settings, config_path: Path) -> list[str]:
    """One warning line for each of the config and password files other users may read or write."""
    files = [("config file", config_path)]
    if settings.mqtt.password_file is not None:
        files.append(("mqtt.password_file", settings.mqtt.password_file))
    return [line for what, path in files if (line := _world_access(what, path)) is not None]


# (mode bit, what the file is, what any user of the host can then do with it)
_WORLD_ACCESS = (
    (stat.S_IROTH, "world-readable", "read"),
    (stat.S_IWOTH, "world-writable", "change"),
)


def _world_access(what: str, path: Path) -> str | None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None  # reading the file reports why it cannot be read
    granted = [(adjective, verb) for bit, adjective, verb in _WORLD_ACCESS if mode & bit]
    if not granted:
        return None
    adjectives = " and ".join(adjective for adjective, _ in granted)
    verbs = " and ".join(verb for _, verb in granted)
    return (
        f"{what} {path} is {adjectives} (mode {mode:04o}): any user of this host can "
        f"{verbs} it; chmod o-rwx {path}"
    )
