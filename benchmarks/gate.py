"""`python -m benchmarks.gate [--quick]`: the silence gate's detections vs none, on the corpus.

Runs the wake detector alone (no recogniser, so it is quick) twice over every positive and
near-miss clip of the accuracy corpus and over the long non-wake stream: once as the daemon
builds it (gate on) and once with the gate off, as a session would (a detection, then the
detector reset and the refractory period). Prints the clips whose detections differ, the
frames the gated detector skipped, and the CPU of each pass.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from benchmarks.accuracy import base_settings
from benchmarks.corpus import FULL, QUICK, Corpus, load_or_build
from benchmarks.run import without_gate
from satellite.audio.gate import GatedDetector
from satellite.config import Settings
from satellite.core.frames import FRAME_S, Frame, split_frames
from satellite.core.session import WakeDetector
from satellite.runtime.engines import build_machine

ROOT = Path(__file__).resolve().parent.parent


def detections(detector: WakeDetector, frames: Iterable[Frame], refractory_s: float) -> list[int]:
    """Frames on which the detector fired, resetting after each like the session does."""
    hits, quiet = [], 0
    for index, frame in enumerate(frames):
        hit = detector.process(frame)
        if quiet > 0:
            quiet -= 1
        elif hit is not None:
            hits.append(index)
            detector.reset()
            quiet = round(refractory_s / FRAME_S)
    return hits


def compare(settings: Settings, corpus: Corpus) -> dict[str, Any]:
    """Detections with and without the gate on every corpus clip and the long stream."""
    gated, plain = build_machine(settings).detector, build_machine(without_gate(settings)).detector
    assert isinstance(gated, GatedDetector)
    refractory = settings.wake.refractory_s
    cpu = {"gate": 0.0, "no_gate": 0.0}
    differing, counts, frames_total = [], {"gate": 0, "no_gate": 0}, 0
    items = [(clip.id, corpus.render(clip).samples) for clip in corpus.clips]
    items.append(("long-stream", corpus.render_stream()))
    for name, samples in items:
        frames = split_frames(samples[: len(samples) // 1280 * 1280])
        frames_total += len(frames)
        found = {}
        for label, detector in (("gate", gated), ("no_gate", plain)):
            detector.reset()
            started = time.process_time()
            found[label] = detections(detector, frames, refractory)
            cpu[label] += time.process_time() - started
            counts[label] += len(found[label])
        if found["gate"] != found["no_gate"]:
            differing.append({"clip": name, **found})
    return {
        "clips": len(corpus.clips),
        "stream_s": round(corpus.spec.long_stream_s),
        "frames": frames_total,
        "detections": counts,
        "clips_with_different_detections": differing,
        "frames_scored_with_gate": gated.frames_scored,
        "cpu_s": {k: round(v, 1) for k, v in cpu.items()},
    }


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print its JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gate", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a quarter of the corpus")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="satellite-gate-") as tmp:
        corpus = load_or_build(QUICK if args.quick else FULL, ROOT / ".cache" / "accuracy")
        report = compare(base_settings(Path(tmp)), corpus)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
