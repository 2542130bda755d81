"""Wake settings swept offline: detections recomputed from recorded per-frame wake scores.

The machine's own rules, replayed on scores: a detection needs `patience` scored frames in a row
at or above the threshold; the detector is not fed while a session listens (assumed to last as
long as the run's median session) and is reset when it ends; during the refractory period that
follows it is fed but cannot fire, so a run of high scores fires as soon as that period is over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from satellite.core.frames import FRAME_S

THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
PATIENCES = (1, 2, 3)
REFRACTORIES_S = (1.0, 2.0, 4.0)
# Targets of issue 6.
MIN_DETECTION = 0.90
MAX_FALSE_ACCEPTS_PER_HOUR = 0.5
MIN_EXACT = 0.80


@dataclass(frozen=True)
class ScoreTrace:
    """The wake score of every frame the detector scored, and the input frame it scored it on."""

    frames: npt.NDArray[np.int32]
    scores: npt.NDArray[np.float32]


@dataclass(frozen=True)
class Rules:
    """One point of the grid, in frames."""

    threshold: float
    patience: int
    session_frames: int
    refractory_frames: int


def detections(trace: ScoreTrace, rules: Rules) -> list[int]:
    """Frames on which the machine would report a wake word under `rules`."""
    found: list[int] = []
    run, listening_until, refractory_until = 0, -1, -1
    for frame, score in zip(trace.frames.tolist(), trace.scores.tolist(), strict=True):
        if frame <= listening_until:
            continue
        run = run + 1 if score >= rules.threshold else 0
        if run >= rules.patience and frame > refractory_until:
            found.append(frame)
            run = 0  # the session's end resets the detector
            listening_until = frame + rules.session_frames
            refractory_until = listening_until + rules.refractory_frames
    return found


@dataclass(frozen=True)
class SweepInput:
    """Score traces of the whole corpus and what the real run measured."""

    positives: Sequence[tuple[ScoreTrace, tuple[int, int], str]]  # trace, window, condition
    near_misses: Sequence[ScoreTrace]
    stream: ScoreTrace
    stream_hours: float
    session_s: float  # median session length in the real run
    exact_rate: float  # clean exact match in the real run (the sweep does not change Vosk)


def sweep(data: SweepInput) -> list[dict[str, Any]]:
    """One row per threshold x patience x refractory."""
    rows = []
    session_frames = round(data.session_s / FRAME_S)
    for threshold in THRESHOLDS:
        for patience in PATIENCES:
            rules = Rules(threshold, patience, session_frames, 0)
            clips = _clip_figures(data, rules)
            for refractory_s in REFRACTORIES_S:
                rules = Rules(threshold, patience, session_frames, round(refractory_s / FRAME_S))
                accepts = len(detections(data.stream, rules))
                per_hour = accepts / data.stream_hours if data.stream_hours else 0.0
                row = {"threshold": threshold, "patience": patience, "refractory_s": refractory_s}
                row |= clips | {"stream_false_accepts": accepts, "false_accepts_per_hour": per_hour}
                row["meets_wake_targets"] = _meets_wake(row)
                row["meets_all_targets"] = (
                    row["meets_wake_targets"] and data.exact_rate >= MIN_EXACT
                )
                rows.append(row)
    return rows


def _clip_figures(data: SweepInput, rules: Rules) -> dict[str, Any]:
    """Detection overall and per condition, and near-miss accepts (refractory plays no part)."""
    hits: dict[str, list[bool]] = {}
    for trace, (first, last), condition in data.positives:
        hit = any(first <= frame <= last for frame in detections(trace, rules))
        hits.setdefault(condition, []).append(hit)
    every = [hit for group in hits.values() for hit in group]
    accepts = sum(bool(detections(trace, rules)) for trace in data.near_misses)
    return {
        "detection": _rate(every),
        "detection_by_condition": {name: _rate(group) for name, group in hits.items()},
        "near_miss_accepts": accepts,
        "near_miss_rate": accepts / len(data.near_misses) if data.near_misses else 0.0,
    }


def _rate(hits: list[bool]) -> float:
    return sum(hits) / len(hits) if hits else 0.0


def _meets_wake(row: dict[str, Any]) -> bool:
    return bool(
        row["detection"] >= MIN_DETECTION
        and row["false_accepts_per_hour"] <= MAX_FALSE_ACCEPTS_PER_HOUR
    )


def best(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The row meeting the wake targets with the most detection, then fewest false accepts."""
    meeting = [row for row in rows if row["meets_wake_targets"]]
    if not meeting:
        return None
    return max(
        meeting,
        key=lambda r: (
            r["detection"],
            -r["false_accepts_per_hour"],
            -r["near_miss_accepts"],
            -r["patience"],
            r["refractory_s"] == 2.0,
        ),
    )


def table(rows: list[dict[str, Any]], conditions: list[str]) -> str:
    """Threshold x patience lines; false accepts per hour for each refractory period."""
    refr = " ".join(f"{f'FA/h r={r:g}s':>11}" for r in REFRACTORIES_S)
    head = f"{'thr':>4} {'pat':>3} {'detect':>7} " + " ".join(f"{c:>7}" for c in conditions)
    lines = [f"{head} {'near-miss':>9} {refr}  meets wake targets (refractory)"]
    for threshold in THRESHOLDS:
        for patience in PATIENCES:
            group = [r for r in rows if r["threshold"] == threshold and r["patience"] == patience]
            first = group[0]
            by = first["detection_by_condition"]
            cells = " ".join(f"{_pct(by.get(c, 0.0)):>7}" for c in conditions)
            fas = " ".join(f"{r['false_accepts_per_hour']:>11.2f}" for r in group)
            meets = ", ".join(f"{r['refractory_s']:g} s" for r in group if r["meets_wake_targets"])
            lines.append(
                f"{threshold:>4.1f} {patience:>3} {_pct(first['detection']):>7} {cells} "
                f"{first['near_miss_accepts']:>9} {fas}  {meets or '-'}"
            )
    return "\n".join(lines)


def _pct(rate: float) -> str:
    return f"{100 * rate:.1f}%"
