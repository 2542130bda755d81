"""openWakeWord loaded lean: the pinned internals it relies on, and the same scores as stock."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from satellite.audio.oww import PINNED_VERSION, RAW_HISTORY, STAND_INS, _installed_version
from satellite.core.frames import split_frames
from satellite.modelfiles import feature_model_paths, wake_model_path
from tests.support.satellite_proc import models_dir
from tests.support.speech import speak

# Every module-level import of the openwakeword 0.6.0 modules the satellite loads. If an
# upgrade changes one, the stand-ins in satellite/audio/oww.py must be reviewed: this fails loudly.
PINNED_IMPORTS = {
    "__init__.py": {
        "os",
        "openwakeword.model",
        "openwakeword.vad",
        "openwakeword.custom_verifier_model",
    },
    "model.py": {
        "numpy", "openwakeword", "openwakeword.utils", "wave", "os", "logging", "functools",
        "pickle", "collections", "time", "typing",
    },
    "utils.py": {
        "os", "numpy", "pathlib", "collections", "multiprocessing.pool", "multiprocessing",
        "time", "logging", "tqdm", "openwakeword", "numpy.lib.format", "typing", "requests",
    },
    "vad.py": {"onnxruntime", "numpy", "os", "collections"},
}  # fmt: skip


def _module_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _package_dir() -> Path:
    spec = importlib.util.find_spec("openwakeword")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations)))


def test_the_pinned_openwakeword_is_installed() -> None:
    assert _installed_version() == PINNED_VERSION


@pytest.mark.parametrize("module", sorted(PINNED_IMPORTS))
def test_the_pinned_modules_import_only_what_the_stand_ins_expect(module: str) -> None:
    assert _module_imports(_package_dir() / module) == PINNED_IMPORTS[module]
    heavy = {"scipy", "sklearn"}
    assert not any(name.split(".")[0] in heavy for name in PINNED_IMPORTS[module])


_LOAD = """
import json, sys
from satellite.audio.oww import model_class
model = model_class()
import openwakeword, requests
print(json.dumps({
    "model": model.__module__,
    "loaded": sorted({name.split(".")[0] for name in sys.modules} & {"scipy", "sklearn", "tqdm"}),
    "stand_ins_left": sorted(n for n in ("requests", "tqdm", "openwakeword.custom_verifier_model")
                             if n in sys.modules and not hasattr(sys.modules[n], "__file__")),
    "real_requests": hasattr(requests, "Session"),
}))
"""


def test_model_class_loads_without_scipy_sklearn_or_tqdm_and_leaves_real_imports_working() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _LOAD], capture_output=True, text=True, timeout=60, check=True
    )
    report = json.loads(out.stdout)
    assert report == {
        "model": "openwakeword.model",
        "loaded": [],
        "stand_ins_left": [],
        "real_requests": True,
    }
    assert set(STAND_INS) == {"openwakeword.custom_verifier_model", "requests", "tqdm"}


def test_a_stand_in_called_is_a_clear_error() -> None:
    from satellite.audio.stand_ins import NotLoadedError, _stand_in

    module = _stand_in("requests", ("get",))
    with pytest.raises(NotLoadedError, match=r"requests\.get is not loaded"):
        module.get("https://example.invalid")


@pytest.mark.integration
def test_the_lean_model_scores_every_frame_exactly_as_stock_openwakeword(
    speech_cache: Path,
) -> None:
    from benchmarks.identity import stock_model
    from satellite.audio.wake import _load

    melspec, embedding = feature_model_paths(models_dir())
    path = wake_model_path(models_dir(), "hey_jarvis")
    stock = stock_model(models_dir(), "hey_jarvis")
    lean = _load([path], melspec, embedding, noise_suppression=False)
    # The lean model skipped the warm-up: its history is zeros where stock's holds noise.
    assert not lean.preprocessor.feature_buffer.any()
    assert lean.preprocessor.feature_buffer.shape == stock.preprocessor.feature_buffer.shape
    assert lean.preprocessor.raw_data_buffer.maxlen == RAW_HISTORY < 16_000
    # Same start state: openWakeWord seeds its history from unseeded noise.
    lean.preprocessor.feature_buffer = stock.preprocessor.feature_buffer.copy()
    noise = np.random.default_rng(3).normal(0, 300, 16_000 * 2).round().astype(np.int16)
    clip = np.concatenate(
        [speak("hey jarvis, turn on the kitchen lights", cache_dir=speech_cache), noise]
    )
    scores = [(stock.predict(f), lean.predict(f)) for f in split_frames(clip)]
    assert all(a == b for a, b in scores)
    assert max(a[path.stem] for a, _ in scores) > 0.5  # the clip does wake it


@pytest.mark.integration
def test_the_skipped_warm_up_has_the_shape_of_openwakewords_own() -> None:
    from openwakeword.utils import AudioFeatures

    from satellite.audio.oww import WARM_UP_EMBEDDINGS, no_warm_up

    melspec, embedding = feature_model_paths(models_dir())
    paths = {"melspec_model_path": str(melspec), "embedding_model_path": str(embedding)}
    stock = AudioFeatures(inference_framework="onnx", **paths)
    with no_warm_up():
        lean = AudioFeatures(inference_framework="onnx", **paths)
    assert stock.feature_buffer.shape == lean.feature_buffer.shape == WARM_UP_EMBEDDINGS
    assert stock.feature_buffer.dtype == lean.feature_buffer.dtype


def test_no_warm_up_gives_openwakewords_method_back_even_when_construction_fails() -> None:
    from satellite.audio.oww import model_class, no_warm_up

    model_class()  # imports openwakeword.utils without its training code
    from openwakeword.utils import AudioFeatures

    original = AudioFeatures.__dict__["_get_embeddings"]
    with pytest.raises(RuntimeError), no_warm_up():
        assert AudioFeatures.__dict__["_get_embeddings"] is not original
        raise RuntimeError("the constructor failed")
    assert AudioFeatures.__dict__["_get_embeddings"] is original
