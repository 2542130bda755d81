"""Room configuration: one TOML file per room, validated, with environment overrides."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from satellite.errors import ConfigError
from satellite.leds.patterns import check_pattern
from satellite.mqtt.topics import DEFAULT_BASE_PREFIX, check_topic_level

EX_CONFIG = 78


def _check_optional_level(value: str) -> str:
    return check_topic_level(value) if value else value


TopicLevel = Annotated[str, AfterValidator(check_topic_level)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttSettings(_Section):
    """Broker connection and topic layout."""

    host: str = Field("127.0.0.1", description="broker host name or address")
    port: int = Field(1883, ge=1, le=65535, description="broker TCP port (8883 is usual for TLS)")
    username: str | None = Field(None, description="MQTT user; the password comes from a file")
    password_file: Path | None = Field(None, description="file holding the password (one line)")
    tls: bool = Field(False, description="connect with TLS (mqtts)")
    ca_file: Path | None = Field(None, description="CA bundle for TLS; system CAs when unset")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive, seconds")
    reconnect_min_s: float = Field(1.0, gt=0, le=60, description="first reconnect delay, seconds")
    reconnect_max_s: float = Field(30.0, gt=0, le=3600, description="reconnect delay cap, seconds")
    offline_queue: int = Field(
        1000,
        ge=10,
        le=100000,
        description="QoS 1 messages kept while the broker is unreachable; "
        "interims (QoS 0) are dropped first",
    )
    topic_version: Annotated[str, AfterValidator(_check_optional_level)] = Field(
        "v1", description="topic version level; empty = legacy v0 (env MQTT_TOPIC_VERSION)"
    )
    base_prefix: TopicLevel = Field(
        DEFAULT_BASE_PREFIX, description="topic base prefix (env MQTT_BASE_PREFIX)"
    )
    dual_publish: bool = Field(False, description="also publish to the legacy v0 tree")
    max_payload_bytes: int = Field(
        65536, ge=256, le=16 << 20, description="inbound payloads above this are dropped unread"
    )

    @model_validator(mode="after")
    def _check_backoff(self) -> MqttSettings:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        return self

    def read_password(self) -> str | None:
        """The password from `password_file`, or None when no file is configured."""
        if self.password_file is None:
            return None
        try:
            return self.password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"mqtt.password_file: cannot read {self.password_file}: {exc.strerror}"
            ) from exc


class AudioSettings(_Section):
    """Microphone capture."""

    device: str = Field(
        "default", description="ALSA PCM name, a substring of a device name, or an index"
    )
    rate: int | None = Field(
        None,
        ge=8000,
        le=192000,
        description="capture rate in Hz; unset: 16000 if the device takes it, else its default",
    )
    channels: int = Field(1, ge=1, le=16, description="channels to open the device with")
    channel: int = Field(0, ge=0, le=15, description="which captured channel to use (0-based)")
    queue_frames: int = Field(
        64, ge=4, le=10000, description="capture queue bound, in 80 ms frames"
    )

    @model_validator(mode="after")
    def _check_channel(self) -> AudioSettings:
        if self.channel >= self.channels:
            raise ValueError(f"channel {self.channel} does not exist with channels={self.channels}")
        return self


class WakeSettings(_Section):
    """Wake-word detection."""

    models: list[str] = Field(
        default_factory=lambda: ["hey_jarvis"],
        min_length=1,
        description="built-in model names or paths to .onnx files",
    )
    threshold: float = Field(
        0.4, gt=0, lt=1, description="score that counts as a detection (see README: Performance)"
    )
    refractory_s: float = Field(
        2.0, ge=0, le=60, description="ignore detections this long after a session ends, seconds"
    )
    patience: int = Field(
        1, ge=1, le=10, description="frames in a row (80 ms each) at or above the threshold"
    )
    noise_suppression: bool = Field(
        False,
        description="Speex noise suppression before the wake model (needs the speexdsp-ns "
        "wheel, which install.sh adds where PyPI has one: Python 3.11/3.12 on x86_64/aarch64)",
    )
    gate: bool = Field(
        True,
        description="silence gate: skip the wake model on frames no louder than the room's "
        "noise floor (the skipped audio is replayed to it when sound returns)",
    )
    gate_margin_db: float = Field(
        6.0, ge=1, le=40, description="a frame opens the gate this far above the noise floor, dB"
    )
    gate_hangover_s: float = Field(
        2.0, ge=0.5, le=30, description="the gate stays open this long after the last loud frame"
    )


class SttSettings(_Section):
    """Speech-to-text and end-of-utterance rules."""

    model: str = Field("vosk-model-small-en-us-0.15", description="Vosk model folder name")
    preroll_s: float = Field(
        1.5,
        ge=0,
        le=5,
        description="audio before the detection fed to Vosk when the speaker did not pause "
        "after the wake word, so it is recognised (and then removed) rather than mangled into "
        "the first word, seconds",
    )
    trailing_silence_s: float = Field(
        1.0,
        gt=0,
        le=10,
        description="end the utterance after this long of silence after the voice (or, in a "
        "room too noisy to tell, without new words)",
    )
    max_utterance_s: float = Field(15.0, gt=0, le=120, description="hard cap per utterance")
    no_speech_timeout_s: float = Field(
        5.0, gt=0, le=60, description="return to idle when nothing is said for this long"
    )
    # Lowercased, whitespace collapsed: Vosk's vocabulary is lowercase single-spaced words.
    phrases: list[Annotated[str, AfterValidator(lambda p: " ".join(p.lower().split()))]] = Field(
        default_factory=list,
        description="command-only room: a transcript is always exactly one of these phrases "
        "(words the model knows); anything else ends the utterance without one; "
        "empty = free dictation",
    )

    @model_validator(mode="after")
    def _check_phrases(self) -> SttSettings:
        if "" in self.phrases:
            raise ValueError(f"phrases: entry {self.phrases.index('') + 1} is blank")
        return self


class FollowupSettings(_Section):
    """Listening again without the wake word when the assistant asks (overlay_hint keep_open)."""

    enabled: bool = Field(False, description="open one follow-up utterance on keep_open")
    no_speech_timeout_s: float = Field(
        4.0, gt=0, le=60, description="back to idle when the follow-up hears nothing, seconds"
    )
    max_per_session: int = Field(
        3,
        ge=1,
        le=20,
        description="follow-up utterances one session may open; later keep_open hints only "
        "show the attentive pattern",
    )


class ArbitrationSettings(_Section):
    """One room answers: satellites that hear the same wake word pick one among themselves."""

    enabled: bool = Field(
        True,
        description="claim each wake word on the household topic and open the session only if "
        "this satellite heard it best; alone on the broker (or without one) nobody waits",
    )
    window_ms: int = Field(
        200,
        ge=50,
        le=2000,
        description="how long a satellite with peers online holds a new session back while the "
        "claims of the others arrive, milliseconds (wake_detected goes out this much later; "
        "no audio is lost)",
    )
    group: TopicLevel = Field(
        "home",
        description="the satellites that arbitrate with each other (one MQTT topic level): "
        "give each household on a shared broker its own",
    )


# --- LEDs and button (issue 3) ---


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


class LedSettings(_Section):
    """Status LEDs: the board (a HAT profile, plus overrides) and the pattern for each state."""

    hat: str = Field(
        "none", description="HAT profile name in hats_dir (respeaker-2mic, …), or none"
    )
    hats_dir: Path | None = Field(
        None,
        description="HAT profile directory; unset: firmware-config/hats of a source checkout, "
        "then /usr/share/satellite/hats",
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


class ButtonSettings(_Section):
    """The mute button."""

    enabled: bool | None = Field(
        None, description="unset: on when the HAT profile has a button (satellite.leds)"
    )
    pin: int = Field(17, ge=0, le=27, description="BCM GPIO number; unset: the HAT's, else 17")
    pull_up: bool = Field(True, description="pressed pulls the pin low (to ground)")
    bounce_s: float = Field(0.05, ge=0, le=2, description="debounce time, seconds")


# --- end of LEDs and button (issue 3) ---


class ModelsSettings(_Section):
    """Where models live."""

    dir: Path = Field(Path("/var/lib/satellite/models"), description="also SATELLITE_MODELS_DIR")


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
