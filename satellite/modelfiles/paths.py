"""Where the installed models are at run time, with a fix in every error when one is missing."""

from pathlib import Path, PurePosixPath

from satellite.errors import ModelError
from satellite.modelfiles.sources import (
    EMBEDDING,
    MELSPECTROGRAM,
    OPENWAKEWORD_DIR,
    VOSK_MODEL,
    WAKE_WORDS,
)


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
            f"{install_hint(models_dir)}"
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
        raise ModelError(f"Vosk model {folder} is missing; {install_hint(models_dir)}")
    return folder


def _installed_file(models_dir: Path, path: Path) -> Path:
    if not path.is_file():
        raise ModelError(f"model file {path} is missing; {install_hint(models_dir)}")
    return path


def install_hint(models_dir: Path) -> str:
    """The command that fixes a missing or damaged model, for error messages."""
    return f"run `satellite models install --dir {models_dir}`"
