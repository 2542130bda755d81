"""openWakeWord 0.6.0 loaded lean: no training-only imports, no warm-up batch, a short raw
audio history."""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import logging
import sys
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np

from satellite.audio.stand_ins import DOWNLOADS, import_with_stand_ins
from satellite.core.frames import FRAME_SAMPLES

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


# openWakeWord's AudioFeatures fills its feature history at construction with the embeddings
# of 4 s of unseeded random noise, one batch through both feature models (41 embeddings of 96).
# That batch leaves ~25 MiB resident for the life of the process, and the detector replaces the
# history anyway (satellite.audio.wake restores a quiet room's state, QUIET_S > the 16
# embeddings a wake model reads). Constructed under `no_warm_up()`, the history starts as zeros
# of the same shape instead. tests/test_oww.py checks the shape against the real warm-up.
WARM_UP_EMBEDDINGS = (41, 96)
_warm_up_lock = threading.Lock()


@contextlib.contextmanager
def no_warm_up() -> Iterator[None]:
    """Within: openWakeWord's AudioFeatures constructed here skip their 4 s warm-up batch."""
    from openwakeword.utils import AudioFeatures

    def zeros(self: Any, x: Any, **kwargs: Any) -> Any:
        return np.zeros(WARM_UP_EMBEDDINGS, np.float32)

    with _warm_up_lock:
        original = AudioFeatures.__dict__.get("_get_embeddings")
        if original is None:  # not the pinned openWakeWord: constructed as it is
            yield
            return
        AudioFeatures._get_embeddings = zeros
        try:
            yield
        finally:
            AudioFeatures._get_embeddings = original


# openWakeWord keeps the last 10 s of raw samples in a deque of Python ints (~6 MiB) and copies
# all of it into a list on every frame, to read only the samples its melspectrogram needs: the
# new frame's plus 480 before them (0.43 ms of a ~2 ms frame here, most of its Python time).
# Fed one frame at a time, it never reads further back, so a deque that long holds every sample
# it reads: the same melspectrograms, the same scores (tests/test_oww.py, frame by frame).
RAW_HISTORY = FRAME_SAMPLES + 480


def short_raw_history(model: Any) -> None:
    """Shorten a Model's raw audio history to what one-frame-at-a-time prediction reads."""
    features = model.preprocessor
    features.raw_data_buffer = deque(features.raw_data_buffer, maxlen=RAW_HISTORY)


def _installed_version() -> str | None:
    try:
        return importlib.metadata.version("openwakeword")
    except importlib.metadata.PackageNotFoundError:
        return None
