"""Accuracy figures from the runs: detection, false accepts, transcripts, and the targets."""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable
from typing import Any

from benchmarks.corpus import Clip
from benchmarks.replay import Run, Session
from benchmarks.wer import corpus_wer, normalise
from satellite.core.frames import FRAME_S

WAKE_WORD = re.compile(r"\bjarvis\b")
DEFAULT_SESSION_S = 3.0  # sweep lockout when the run had no session to measure


def detected_session(run: Run) -> Session | None:
    """The first session whose wake fell inside the clip's detection window."""
    first, last = run.window or (0, -1)
    return next((s for s in run.sessions if first <= s.wake_frame <= last), None)


def _rate(hits: int, total: int) -> dict[str, Any]:
    return {"n": total, "hits": hits, "rate": round(hits / total, 4) if total else None}


def _grouped(
    clips: list[Clip], hit: Callable[[Clip], bool], key: Callable[[Clip], str]
) -> dict[str, Any]:
    groups: dict[str, list[bool]] = {}
    for clip in clips:
        groups.setdefault(key(clip), []).append(hit(clip))
    return {name: _rate(sum(hits), len(hits)) for name, hits in groups.items()}


def detection(positives: list[Clip], runs: dict[str, Run]) -> dict[str, Any]:
    """Detection rate overall and per condition, voice, speed, noise and command."""

    def hit(clip: Clip) -> bool:
        return detected_session(runs[clip.id]) is not None

    keys: dict[str, Callable[[Clip], str]] = {
        "by_condition": lambda c: c.condition,
        "by_voice": lambda c: c.voice,
        "by_speed": lambda c: str(c.speed),
        "by_noise": lambda c: c.noise,
        "by_command": lambda c: c.expected,
    }
    early = [clip.id for clip in positives if _woke_outside(runs[clip.id], before=True)]
    late = [clip.id for clip in positives if _woke_outside(runs[clip.id], before=False)]
    report = {"all": _rate(sum(map(hit, positives)), len(positives))}
    report |= {name: _grouped(positives, hit, key) for name, key in keys.items()}
    return report | {
        "woke_before_speech": len(early),
        "woke_before_speech_clips": early,
        "woke_after_window": len(late),
        "woke_after_window_clips": late,
    }


def _woke_outside(run: Run, *, before: bool) -> bool:
    """Whether a wake came before the clip's speech (`before`) or after its window."""
    first, last = run.window or (0, -1)
    frames = [s.wake_frame for s in run.sessions]
    return any(f < first for f in frames) if before else any(f > last for f in frames)


def transcripts(positives: list[Clip], runs: dict[str, Run]) -> dict[str, Any]:
    """Exact match and WER of the final after the detecting wake, per condition."""
    heard: dict[str, list[tuple[Clip, str]]] = {}
    for clip in positives:
        session = detected_session(runs[clip.id])
        if session is not None:
            heard.setdefault(clip.condition, []).append((clip, normalise(session.text or "")))
    every = [pair for pairs in heard.values() for pair in pairs]
    totals = _grouped(positives, lambda c: True, lambda c: c.condition)
    by_condition = {
        name: _text_figures(pairs, totals[name]["n"]) for name, pairs in sorted(heard.items())
    }
    wrong = [
        {"clip": c.id, "voice": c.voice, "speed": c.speed, "expected": c.expected, "got": text}
        for c, text in heard.get("clean", [])
        if text != c.expected
    ]
    return {
        "all": _text_figures(every, len(positives)),
        "by_condition": by_condition,
        "leading_words_dropped": sum(_lost_head(c.expected, text) for c, text in every),
        "wrong_clean": wrong,
        "bare_vosk_clean": _floor(positives, runs),
    }


def _lost_head(expected: str, text: str) -> bool:
    """The transcript is the command without its first word(s), and otherwise right."""
    return bool(text) and text != expected and expected.endswith(" " + text)


def _floor(positives: list[Clip], runs: dict[str, Run]) -> dict[str, Any]:
    """Bare Vosk on each clean command spoken alone: what the model can do without us."""
    pairs = [
        (clip, normalise(floor))
        for clip in positives
        if (floor := runs[clip.id].floor_text) is not None
    ]
    figures = _text_figures(pairs, len(pairs))
    wrong = [{"clip": c.id, "expected": c.expected, "got": t} for c, t in pairs if t != c.expected]
    return figures | {"wrong": wrong}


def _text_figures(pairs: list[tuple[Clip, str]], clips: int) -> dict[str, Any]:
    exact = sum(text == clip.expected for clip, text in pairs)
    return {
        "transcribed": len(pairs),
        "exact": exact,
        "exact_rate": round(exact / len(pairs), 4) if pairs else None,
        "exact_of_all_clips": round(exact / clips, 4) if clips else None,
        "wer": round(corpus_wer([(clip.expected, text) for clip, text in pairs]), 4),
    }


def near_misses(clips: list[Clip], runs: dict[str, Run]) -> dict[str, Any]:
    """False accepts on near-miss clips (any wake in the clip), per phrase and condition."""

    def accepted(clip: Clip) -> bool:
        return bool(runs[clip.id].sessions)

    return {
        "all": _rate(sum(map(accepted, clips)), len(clips)),
        "by_phrase": _grouped(clips, accepted, lambda c: c.expected),
        "by_condition": _grouped(clips, accepted, lambda c: c.condition),
        "accepted_clips": [c.id for c in clips if accepted(c)],
    }


def long_stream(run: Run) -> dict[str, Any]:
    """False accepts per hour of continuous non-wake speech."""
    hours = run.frames * FRAME_S / 3600
    return {
        "audio_s": round(run.frames * FRAME_S, 1),
        "false_accepts": len(run.sessions),
        "per_hour": round(len(run.sessions) / hours, 3) if hours else None,
        "sessions": [
            {"at_s": round(s.wake_frame * FRAME_S, 2), "score": round(s.score, 3), "text": s.text}
            for s in run.sessions
        ],
    }


def wake_word_in_transcripts(runs: list[Run]) -> list[dict[str, str]]:
    """Every final, anywhere in the run, whose text contains the wake word (with its clip)."""
    return [
        {"run": run.name, "text": s.text}
        for run in runs
        for s in run.sessions
        if s.text and WAKE_WORD.search(normalise(s.text))
    ]


def median_session_s(runs: list[Run]) -> float:
    """Median time from wake to the end of the session, over the whole run."""
    lengths = [(s.end_frame - s.wake_frame) * FRAME_S for run in runs for s in run.sessions]
    return statistics.median(lengths) if lengths else DEFAULT_SESSION_S


def _verdict(name: str, value: float | None, limit: float, op: str, unit: str) -> dict[str, Any]:
    if value is None:
        return {"target": name, "value": None, "limit": limit, "op": op, "status": "n/a"}
    margin = limit - value if op == "≤" else value - limit
    return {
        "target": name,
        "value": round(value, 3),
        "limit": limit,
        "op": op,
        "unit": unit,
        "status": "PASS" if margin >= 0 else "MISS",
        "margin": round(margin, 3),
    }


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's accuracy targets, each with PASS/MISS and the margin."""
    clean = report["transcripts"]["by_condition"].get("clean", {})
    exact = clean.get("exact_rate")
    return [
        _verdict("detection, all clips", 100 * report["detection"]["all"]["rate"], 90, "≥", "%"),
        _verdict("false accepts / hour", report["long_stream"]["per_hour"], 0.5, "≤", "/h"),
        _verdict("clean exact match", None if exact is None else 100 * exact, 80, "≥", "%"),
        _verdict("wake word in transcripts", len(report["wake_word_in_transcripts"]), 0, "≤", ""),
    ]
