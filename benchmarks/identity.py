"""`python -m benchmarks.identity [--quick]`: the satellite's openWakeWord vs stock, frame by frame.

The satellite loads openWakeWord lean (satellite.audio.oww: no training imports, no warm-up
batch, a raw history of one frame's reads). This runs a stock `openwakeword.model.Model` and
the satellite's, built from the same model files, side by side over every positive and
near-miss clip of the accuracy corpus and its long non-wake stream, one 80 ms frame at a time,
and compares every score of every frame. Both start from the same state (stock's, copied into
the satellite's model) and hear the same audio, as one stream, without resets.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.corpus import FULL, QUICK, Corpus, load_or_build
from satellite.audio.wake import _load
from satellite.core.frames import FRAME_SAMPLES, split_frames
from satellite.modelfiles import feature_model_paths, wake_model_path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / ".cache" / "models"
# The streaming state openWakeWord 0.6.0 carries from frame to frame.
STATE = ("melspectrogram_buffer", "accumulated_samples", "raw_data_remainder", "feature_buffer")


def stock_model(models_dir: Path, wake_word: str) -> Any:
    """openWakeWord's Model as its README builds it (ONNX), from the satellite's model files."""
    from openwakeword.model import Model

    melspec, embedding = feature_model_paths(models_dir)
    return Model(
        wakeword_models=[str(wake_model_path(models_dir, wake_word))],
        inference_framework="onnx",
        melspec_model_path=str(melspec),
        embedding_model_path=str(embedding),
    )


def models(models_dir: Path, wake_word: str) -> tuple[Any, Any]:
    """A stock openWakeWord Model and the satellite's, on the same files, in the same state."""
    stock = stock_model(models_dir, wake_word)
    melspec, embedding = feature_model_paths(models_dir)
    path = wake_model_path(models_dir, wake_word)
    lean = _load([path], melspec, embedding, noise_suppression=False)
    for name in STATE:
        value = getattr(stock.preprocessor, name)
        setattr(lean.preprocessor, name, value.copy() if isinstance(value, np.ndarray) else value)
    raw = lean.preprocessor.raw_data_buffer
    lean.preprocessor.raw_data_buffer = deque(stock.preprocessor.raw_data_buffer, raw.maxlen)
    return stock, lean


def compare(corpus: Corpus, models_dir: Path = MODELS) -> dict[str, Any]:
    """Every frame's scores, stock vs the satellite's, over the corpus and its stream."""
    stock, lean = models(models_dir, "hey_jarvis")
    items = [(clip.id, corpus.render(clip).samples) for clip in corpus.clips]
    items.append(("long-stream", corpus.render_stream()))
    frames = differing = 0
    first_difference: dict[str, Any] | None = None
    cpu = {"stock": 0.0, "satellite": 0.0}
    for name, samples in items:
        for index, frame in enumerate(
            split_frames(samples[: len(samples) // FRAME_SAMPLES * FRAME_SAMPLES])
        ):
            started = time.process_time()
            expected = stock.predict(frame)
            middle = time.process_time()
            got = lean.predict(frame)
            cpu["stock"] += middle - started
            cpu["satellite"] += time.process_time() - middle
            frames += 1
            if got != expected:
                differing += 1
                if first_difference is None:
                    first_difference = {
                        "clip": name,
                        "frame": index,
                        "stock": expected,
                        "satellite": got,
                    }
    return {
        "clips": len(corpus.clips),
        "stream_s": round(corpus.spec.long_stream_s),
        "frames_compared": frames,
        "frames_with_different_scores": differing,
        "first_difference": first_difference,
        "cpu_s": {k: round(v, 1) for k, v in cpu.items()},
        "identical": differing == 0 and frames > 0,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print its JSON; exit 1 if any frame's scores differ."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.identity", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a quarter of the corpus")
    args = parser.parse_args(argv)
    corpus = load_or_build(QUICK if args.quick else FULL, ROOT / ".cache" / "accuracy")
    report = compare(corpus)
    print(json.dumps(report, indent=2))
    return 0 if report["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
