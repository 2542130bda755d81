"""openWakeWord 0.6.0 loaded lean: no training-only imports, ONNX sessions without an arena."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib
import importlib.metadata
import logging
import sys
from pathlib import Path
from typing import Any

from satellite.audio.stand_ins import DOWNLOADS, import_with_stand_ins

log = logging.getLogger(__name__)

PINNED_VERSION = "0.6.0"

# What openwakeword 0.6.0 imports at module level only for code the satellite never runs:
# openwakeword/__init__.py imports custom_verifier_model (training; it pulls scipy and
# scikit-learn, ~90 MiB), utils.py imports requests (model downloads) and tqdm (progress bars
# of batch feature extraction). tests/test_oww.py fails if the pinned modules import more.
STAND_INS: dict[str, tuple[str, ...]] = {
    "openwakeword.custom_verifier_model": ("train_custom_verifier",),
    **DOWNLOADS,
}


def model_class() -> Any:
    """openwakeword.model.Model, imported without scipy, scikit-learn, requests and tqdm.

    Another openwakeword version (or one already imported in full) is imported as it is.
    """
    if "openwakeword" in sys.modules or _installed_version() != PINNED_VERSION:
        if "openwakeword" not in sys.modules:
            log.warning(
                "openwakeword %s is not the pinned %s: importing it in full (~100 MiB more)",
                _installed_version(),
                PINNED_VERSION,
            )
        return importlib.import_module("openwakeword.model").Model
    return import_with_stand_ins("openwakeword.model", STAND_INS).Model


def lean_sessions(model: Any, paths: dict[str, Path], melspec: Path, embedding: Path) -> None:
    """Rebuild a Model's ONNX sessions without the CPU memory arena, one thread each.

    openWakeWord creates them with the arena on, which keeps the peak of its 4 s warm-up batch
    (~20 MiB) for the life of the process. Same graphs, same kernels: the same scores.
    `paths` maps openWakeWord's model keys (file stems) to their files.
    """
    features = model.preprocessor
    features.melspec_model = _session(melspec)
    features.embedding_model = _session(embedding)
    for key, path in paths.items():
        session = _session(path)
        predict: functools.partial[Any] = model.model_prediction_function[key]
        model.models[key] = session
        model.model_prediction_function[key] = functools.partial(predict.func, session)
    release_freed_memory()


def release_freed_memory() -> None:
    """Hand memory freed by the old sessions back to the OS (glibc only; a no-op elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = False
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _installed_version() -> str | None:
    try:
        return importlib.metadata.version("openwakeword")
    except importlib.metadata.PackageNotFoundError:
        return None
