"""`python -m benchmarks.accuracy [--quick] [--json FILE] [--set KEY=VALUE ...] [--sweep]`.

Wake-word and transcript accuracy of the real pipeline on a generated corpus (benchmarks.corpus):
detection rate of "hey jarvis, <command>" in clean and noisy clips, false accepts on near-misses
and per hour of continuous non-wake speech, exact match and word error rate of the finals, and
whether the wake word ever shows up in a transcript. `--set` changes any setting for the run;
`--sweep` also evaluates wake thresholds x patience x refractory offline (benchmarks.sweep).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from benchmarks import sweep as sweeping
from benchmarks.corpus import FULL, QUICK, Corpus, load_or_build
from benchmarks.metrics import (
    detection,
    long_stream,
    median_session_s,
    near_misses,
    targets,
    transcripts,
    wake_word_in_transcripts,
)
from benchmarks.replay import Run, run_corpus
from satellite.config import Settings, load_settings
from satellite.core.frames import FRAME_S
from tests.support.satellite_proc import ROOT, room_config

CACHE = ROOT / ".cache" / "accuracy"
WORKERS = 2


class OverrideError(ValueError):
    """A --set option that does not name a setting or does not validate."""


# --- settings ---


def base_settings(workdir: Path) -> Settings:
    """The benchmarks' standard room (as benchmarks.run uses), models from .cache/models."""
    return load_settings(room_config(workdir / "salon.toml", port=1883))


def apply_overrides(settings: Settings, pairs: list[str]) -> Settings:
    """`settings` with each "section.field=value" applied (value parsed as JSON, else text)."""
    data = settings.model_dump()
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise OverrideError(f"--set {pair}: expected KEY=VALUE, e.g. wake.threshold=0.6")
        _assign(data, key, _parse(raw))
    try:
        # model_validate: the settings as given, without the environment read on top again.
        return Settings.model_validate(data)
    except ValidationError as exc:
        reasons = "; ".join(_reason(error) for error in exc.errors())
        raise OverrideError(f"--set: {reasons}") from exc


def _parse(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _assign(data: dict[str, Any], key: str, value: Any) -> None:
    target = data
    *sections, name = key.split(".")
    for depth, section in enumerate(sections):
        if not isinstance(target.get(section), dict):
            raise OverrideError(f"--set {key}: {'.'.join(sections[: depth + 1])} is not a section")
        target = target[section]
    if name not in target:
        raise OverrideError(f"--set {key}: unknown setting")
    target[name] = value


def _reason(error: Any) -> str:
    return f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"


# --- report ---


def build_report(
    corpus: Corpus, runs: list[Run], settings: Settings, mode: str, overrides: list[str]
) -> dict[str, Any]:
    """Every figure of the run (without the sweep)."""
    by_name = {run.name: run for run in runs}
    positives, misses = corpus.positives, corpus.near_misses
    audio_s = sum(run.frames for run in runs) * FRAME_S
    report: dict[str, Any] = {
        "mode": mode,
        "overrides": overrides,
        "settings": {"wake": settings.wake.model_dump(), "stt": settings.stt.model_dump()},
        "corpus": _corpus_info(corpus, by_name["stream"]),
        "detection": detection(positives, by_name),
        "transcripts": transcripts(positives, by_name),
        "near_misses": near_misses(misses, by_name),
        "long_stream": long_stream(by_name["stream"]),
        "wake_word_in_transcripts": wake_word_in_transcripts(runs),
        "audio_hours": round(audio_s / 3600, 3),
        "worker_cpu_s": round(sum(run.cpu_s for run in runs), 1),
    }
    report["targets"] = targets(report)
    return report


def _corpus_info(corpus: Corpus, stream: Run) -> dict[str, Any]:
    spec = corpus.spec
    return {
        "key": spec.key(),
        "directory": str(corpus.directory),
        "positives": len(corpus.positives),
        "near_misses": len(corpus.near_misses),
        "stream_sentences": len(corpus.stream),
        "stream_s": round(stream.frames * FRAME_S, 1),
        "voices": list(spec.voices),
        "speeds": list(spec.speeds),
        "snrs_db": list(spec.snrs_db),
        "noises": list(spec.noises),
    }


def sweep_report(corpus: Corpus, runs: list[Run], report: dict[str, Any]) -> dict[str, Any]:
    """The offline sweep over the recorded score traces."""
    by_name = {run.name: run for run in runs}
    positives = [
        (_trace(by_name[c.id]), by_name[c.id].window or (0, -1), c.condition)
        for c in corpus.positives
    ]
    stream = by_name["stream"]
    exact = report["transcripts"]["by_condition"].get("clean", {}).get("exact_rate") or 0.0
    data = sweeping.SweepInput(
        positives=positives,
        near_misses=[_trace(by_name[c.id]) for c in corpus.near_misses],
        stream=_trace(stream),
        stream_hours=stream.frames * FRAME_S / 3600,
        session_s=median_session_s(runs),
        exact_rate=exact,
    )
    rows = sweeping.sweep(data)
    return {"session_s": round(data.session_s, 2), "rows": rows, "best": sweeping.best(rows)}


def _trace(run: Run) -> sweeping.ScoreTrace:
    if run.trace is None:
        raise ValueError(f"{run.name}: no score trace (run with --sweep)")
    return run.trace


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.1f}%"


def summary(report: dict[str, Any]) -> str:
    """The short human tables."""
    info, wake = report["corpus"], report["settings"]["wake"]
    overrides = f"; --set {' '.join(report['overrides'])}" if report["overrides"] else ""
    det = report["detection"]
    return "\n".join(
        [
            f"accuracy, {report['mode']} run: {info['positives']} positives, "
            f"{info['near_misses']} near-misses, {info['stream_s'] / 60:.1f} min non-wake "
            f"stream; {report['elapsed_s'] / 60:.1f} min, {report['audio_hours']:.2f} h of audio",
            f"wake: threshold {wake['threshold']}, patience {wake.get('patience')}, "
            f"refractory {wake['refractory_s']} s, gate {wake.get('gate')}{overrides}",
            "",
            _condition_table(report),
            "",
            "detection by voice: " + _groups(det["by_voice"]),
            "detection by speed: " + _groups(det["by_speed"]),
            "detection by noise: " + _groups(det["by_noise"]),
            "near-misses accepted: " + _accepted(report["near_misses"]["by_phrase"]),
            f"positives woken before the speech: {det['woke_before_speech']}, after the window: "
            f"{det['woke_after_window']}; transcripts missing only leading words: "
            f"{report['transcripts']['leading_words_dropped']}",
            _floor_line(report["transcripts"]["bare_vosk_clean"]),
            f"long stream: {report['long_stream']['false_accepts']} false accepts in "
            f"{report['long_stream']['audio_s'] / 3600:.2f} h",
            "",
            _targets_table(report["targets"]),
        ]
    )


def _condition_table(report: dict[str, Any]) -> str:
    det, text, misses = report["detection"], report["transcripts"], report["near_misses"]
    conditions = list(det["by_condition"])
    by = text["by_condition"]
    rows = [
        ("detection", det["all"]["rate"], [det["by_condition"][c]["rate"] for c in conditions]),
        ("exact (transcribed)", text["all"]["exact_rate"], _col(by, conditions, "exact_rate")),
        (
            "exact (all clips)",
            text["all"]["exact_of_all_clips"],
            _col(by, conditions, "exact_of_all_clips"),
        ),
        ("WER (transcribed)", text["all"]["wer"], _col(by, conditions, "wer")),
        (
            "near-miss accepts",
            misses["all"]["rate"],
            [misses["by_condition"][c]["rate"] for c in conditions],
        ),
    ]
    head = f"{'':22}{'all':>8}" + "".join(f"{c:>8}" for c in conditions)
    return "\n".join([head, *(_row(*row) for row in rows)])


def _floor_line(floor: dict[str, Any]) -> str:
    return (
        f"floor, bare Vosk on the clean commands spoken alone: exact {_pct(floor['exact_rate'])}, "
        f"WER {_pct(floor['wer'])} ({floor['transcribed']} clips)"
    )


def _col(by: dict[str, Any], conditions: list[str], field: str) -> list[float | None]:
    return [by.get(c, {}).get(field) for c in conditions]


def _row(name: str, overall: float | None, cells: list[float | None]) -> str:
    return f"{name:22}{_pct(overall):>8}" + "".join(f"{_pct(c):>8}" for c in cells)


def _groups(groups: dict[str, Any]) -> str:
    return ", ".join(f"{name} {_pct(g['rate'])}" for name, g in groups.items())


def _accepted(phrases: dict[str, Any]) -> str:
    hits = [f"{p} {g['hits']}/{g['n']}" for p, g in phrases.items() if g["hits"]]
    total = sum(g["n"] for g in phrases.values())
    return ", ".join(hits) if hits else f"none of {total}"


def _targets_table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'target':28} {'value':>10} {'limit':>10}  verdict"]
    for row in rows:
        unit = row.get("unit", "")
        value = "n/a" if row["value"] is None else f"{row['value']:g}{unit}"
        verdict = row["status"]
        if "margin" in row:
            word = "margin" if row["status"] == "PASS" else "by"
            verdict += f" ({word} {abs(row['margin']):g}{unit})"
        lines.append(
            f"{row['target']:28} {value:>10} {row['op']} {row['limit']:g}{unit:<6}  {verdict}"
        )
    return "\n".join(lines)


# --- command ---


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Generate (or load) the corpus, run it, and build the report."""
    started = time.monotonic()
    spec = QUICK if args.quick else FULL
    corpus = load_or_build(spec, args.cache, workers=args.workers)
    generated_s = time.monotonic() - started
    runs = run_corpus(settings, corpus, sweep=args.sweep, workers=args.workers)
    mode = "quick" if args.quick else "full"
    report = build_report(corpus, runs, settings, mode, args.set)
    if args.sweep:
        report["sweep"] = sweep_report(corpus, runs, report)
    report["corpus_s"] = round(generated_s, 1)
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    return report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.accuracy", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a quarter of the grid, 15 min stream")
    parser.add_argument("--json", type=Path, help="write the JSON report here")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change a setting for this run, e.g. wake.threshold=0.6 (repeatable)",
    )
    parser.add_argument("--sweep", action="store_true", help="also sweep threshold/patience")
    parser.add_argument("--workers", type=int, default=WORKERS, help="worker processes")
    parser.add_argument("--cache", type=Path, default=CACHE, help="corpus cache directory")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run and print the tables; a missed target never fails the command (exit 2: bad --set)."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="satellite-accuracy-") as tmp:
        try:
            settings = apply_overrides(base_settings(Path(tmp)), args.set)
        except OverrideError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    report = run(args, settings)
    path = args.json or args.cache / f"report-{report['mode']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(summary(report))
    if "sweep" in report:
        print(_sweep_text(report))
    print(f"\nJSON report: {path}")
    return 0


def _sweep_text(report: dict[str, Any]) -> str:
    data = report["sweep"]
    conditions = list(report["detection"]["by_condition"])
    best = data["best"]
    choice = (
        "none meets the wake targets"
        if best is None
        else f"threshold {best['threshold']}, patience {best['patience']}, "
        f"refractory {best['refractory_s']:g} s"
    )
    exact = report["transcripts"]["by_condition"].get("clean", {}).get("exact_rate")
    exact_ok = exact is not None and exact >= sweeping.MIN_EXACT
    return (
        f"\nsweep (offline from recorded scores; sessions assumed {data['session_s']} s): "
        f"wake targets detection ≥ {sweeping.MIN_DETECTION:.0%}, "
        f"≤ {sweeping.MAX_FALSE_ACCEPTS_PER_HOUR} false accepts/h;\n"
        f"clean exact match {_pct(exact)} in this run applies to every row "
        f"({'PASS' if exact_ok else 'MISS'} ≥ {sweeping.MIN_EXACT:.0%})\n"
        f"{sweeping.table(data['rows'], conditions)}\n"
        f"best for the wake targets: {choice}"
    )


if __name__ == "__main__":
    sys.exit(main())
