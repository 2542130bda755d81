"""What the satellite hears and understands: microphone, wake word, speech to text,
follow-up listening, and where the models live."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from satellite.config.base import Section


class AudioSettings(Section):
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


class WakeSettings(Section):
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


class SttSettings(Section):
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


class FollowupSettings(Section):
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


class ModelsSettings(Section):
    """Where models live."""

    dir: Path = Field(Path("/var/lib/satellite/models"), description="also SATELLITE_MODELS_DIR")
