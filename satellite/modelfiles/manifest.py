"""`.manifest.json` in each model folder: what it was installed from, and checking it is intact."""

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from satellite.modelfiles.paths import install_hint
from satellite.modelfiles.sources import DEFAULT_SOURCES, Artifact

MANIFEST_NAME = ".manifest.json"


class _Manifest(BaseModel):
    """`.manifest.json`: the sources an install came from and every file's sha256."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    artifact: str
    sources: list[str]
    files: dict[str, str]


def write_manifest(folder: Path, artifact: Artifact) -> None:
    """Record the artifact's sources and the sha256 of every file now in `folder`."""
    files = {rel: sha256_file(folder / rel) for rel in _files_under(folder)}
    manifest = _Manifest(artifact=artifact.name, sources=_source_hashes(artifact), files=files)
    (folder / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2) + "\n")


def verify_models(models_dir: Path, *, sources: Sequence[Artifact] = DEFAULT_SOURCES) -> list[str]:
    """Problems with the installed models, each with its fix; empty when all are intact."""
    hint = install_hint(models_dir)
    return [
        f"{problem}; {hint}"
        for artifact in sources
        for problem in manifest_problems(models_dir / artifact.name, artifact)
    ]


def manifest_problems(dest: Path, artifact: Artifact) -> list[str]:
    """What is wrong with the install in `dest`; empty when it matches `artifact` exactly."""
    name = artifact.name
    if not dest.is_dir():
        return [f"{name}: not installed ({dest} is missing)"]
    manifest = read_manifest(dest)
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
        return None if sha256_file(path) == sha256 else "is corrupt (sha256 mismatch)"
    except FileNotFoundError:
        return "is missing"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"


def read_manifest(folder: Path) -> _Manifest | None:
    """The manifest in `folder`, or None when it is missing or unreadable."""
    try:
        return _Manifest.model_validate_json((folder / MANIFEST_NAME).read_bytes())
    except (OSError, ValidationError):
        return None


def _source_hashes(artifact: Artifact) -> list[str]:
    return [source.sha256 for source in artifact.sources]


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _files_under(folder: Path) -> list[str]:
    manifest = folder / MANIFEST_NAME
    return sorted(
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file() and path != manifest
    )
