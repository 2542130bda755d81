"""Room configuration: one TOML file per room, validated, with environment overrides.

One module per boundary's settings (mqtt, audio, leds) and the whole in settings; every name
is importable from here. The settings are the bottom layer: this package imports only
satellite.errors, and every default lives here once.
"""

from satellite.config.audio import (
    AudioSettings,
    FollowupSettings,
    ModelsSettings,
    SttSettings,
    WakeSettings,
)
from satellite.config.leds import PATTERN_NAMES, ButtonSettings, LedSettings, check_pattern
from satellite.config.mqtt import ArbitrationSettings, MqttSettings, TopicLevel, check_topic_level
from satellite.config.settings import (
    ENV_ALIASES,
    EX_CONFIG,
    MACHINE_ID_FILE,
    Settings,
    default_satellite_id,
    load_settings,
    read_toml,
    warn_insecure_files,
)

__all__ = [
    "ENV_ALIASES",
    "EX_CONFIG",
    "MACHINE_ID_FILE",
    "PATTERN_NAMES",
    "ArbitrationSettings",
    "AudioSettings",
    "ButtonSettings",
    "FollowupSettings",
    "LedSettings",
    "ModelsSettings",
    "MqttSettings",
    "Settings",
    "SttSettings",
    "TopicLevel",
    "WakeSettings",
    "check_pattern",
    "check_topic_level",
    "default_satellite_id",
    "load_settings",
    "read_toml",
    "warn_insecure_files",
]
