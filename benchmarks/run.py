"""`python -m benchmarks.run [--quick] [--json FILE]`: every figure of issue 6 against its floor."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import cpu, live, process
from benchmarks.bare import BareEngines
from benchmarks.signals import Speech, silence_stream
from satellite.config import Settings, load_settings
from satellite.core.frames import SAMPLE_RATE, Frame
from satellite.core.session import SessionMachine
from satellite.runtime.engines import build_machine, load_engines
from tests.support.broker import Broker
from tests.support.satellite_proc import room_config
from tests.support.speech import save_wav

WAKE_TAIL_S = 5.0  # after each command: the session ends and the refractory period passes


@dataclass(frozen=True)
class Plan:
    """How much audio and how many repetitions."""

    silence_s: float
    speech_s: float
    wake_repeats: int
    rounds: int
    commands: int
    process_s: float  # each stream fed to the whole processes (the daemon hears it in real time)


QUICK = Plan(silence_s=20, speech_s=15, wake_repeats=2, rounds=3, commands=5, process_s=45)
FULL = Plan(silence_s=60, speech_s=45, wake_repeats=5, rounds=5, commands=20, process_s=180)


def machine_info() -> dict[str, Any]:
    """CPU model, core count and the BLAS/thread environment as found (never changed)."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    threads = {k: v for k, v in os.environ.items() if k.endswith("_NUM_THREADS") or "BLAS" in k}
    return {
        "cpu_model": model,
        "nproc": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "thread_env": threads,
    }


def measure_cpu(settings: Settings, speech: Speech, plan: Plan) -> dict[str, Any]:
    """CPU per audio second, satellite vs bare, on silence, non-wake speech and commands.

    The wake-stage rows use a machine without the silence gate (the stage's own overhead);
    the gate rows and the listening rows use the machine as configured (gate on by default).
    """
    gated = build_machine(settings)
    plain = build_machine(without_gate(settings))
    engines = BareEngines(settings.models.dir, list(settings.wake.models), settings.stt.model)
    wake_stream = speech.wake_stream(plan.wake_repeats, WAKE_TAIL_S)
    for machine in (gated, plain):  # warm-up: first inferences allocate
        cpu.compare(
            "warm-up",
            wake_stream,
            machine=machine,
            engines=engines,
            rounds=1,
            select=cpu.all_frames,
        )
    silence, no_wake = silence_stream(plan.silence_s), speech.no_wake_stream(plan.speech_s)
    runs: dict[str, tuple[SessionMachine, list[Frame], cpu.Select, bool]] = {
        "wake_silence": (plain, silence, cpu.idle_frames, False),
        "wake_speech_no_wake_word": (plain, no_wake, cpu.idle_frames, False),
        "wake_speech_with_wake_word": (plain, wake_stream, cpu.idle_frames, False),
        "gate_silence": (gated, silence, cpu.idle_frames, False),
        "gate_speech_no_wake_word": (gated, no_wake, cpu.idle_frames, False),
        "gate_speech_with_wake_word": (gated, wake_stream, cpu.idle_frames, False),
        "listening_stage": (gated, wake_stream, cpu.listening_frames, True),
        "listening_vs_bare_vosk_only": (gated, wake_stream, cpu.listening_frames, False),
        "whole_session_stream": (gated, wake_stream, cpu.all_frames, False),
    }
    return {
        name: cpu.compare(
            name,
            frames,
            machine=machine,
            engines=engines,
            rounds=plan.rounds,
            select=select,
            wake_while_listening=both,
        ).as_dict()
        for name, (machine, frames, select, both) in runs.items()
    }


def without_gate(settings: Settings) -> Settings:
    """The same settings with the silence gate off."""
    return settings.model_copy(update={"wake": settings.wake.model_copy(update={"gate": False})})


def measure_live(
    workdir: Path, config: Path, settings: Settings, speech: Speech, plan: Plan
) -> dict[str, Any]:
    """Latencies, start->READY and peak RSS on the real daemon."""
    detection = live.detecting_frame(build_machine(settings), speech.wake)
    broker = Broker(workdir / "broker", port=_config_port(config))
    with broker:
        result = live.run_live(
            workdir, config, broker, speech.wake, detection=detection, n=plan.commands
        )
    return {
        "commands": plan.commands,
        "sessions": result.sessions,
        "missed": result.missed,
        "exact_transcripts": result.exact,
        "offline_first_crossing_frame": detection.frame,
        "live_detecting_frames": result.frames,
        "live_scores": result.live_scores,
        "fifo_backlog_chunks_at_feed": result.backlog_chunks,
        "wake_ms": _summary(result.wake_ms),
        "daemon_read_to_wake_ms": _summary(result.read_to_received_ms),
        "fifo_write_to_daemon_read_ms": _summary(result.rig_ms),
        "wake_minus_fifo_backlog_ms": _summary(result.wake_corrected_ms),
        "final_ms": _summary(result.final_ms),
        "trailing_silence_s": settings.stt.trailing_silence_s,
        "ready_s": [round(s, 3) for s in result.ready_s],
        "ready_p50_s": round(live.median(result.ready_s), 3),
        "satellite_peak_rss_mb": round(result.peak_rss_kb / 1024, 1),
        "satellite_idle_rss_mb": round(result.idle_rss_kb / 1024, 1),
    }


def measure_process(
    workdir: Path, config: Path, settings: Settings, speech: Speech, plan: Plan
) -> dict[str, Any]:
    """Whole `satellite run` and `satellite simulate` processes vs the bare loops' process."""
    engines = load_engines(settings)

    def fresh() -> SessionMachine:
        return build_machine(settings, engines)

    seconds = plan.process_s
    repeats = max(1, round(seconds / (len(speech.wake) / SAMPLE_RATE + WAKE_TAIL_S)))
    sources = {
        "room_tone": process.tone(seconds),
        "speech_no_wake_word": np.concatenate(speech.no_wake_stream(seconds)),
        "speech_near_misses": process.near_miss_speech(workdir / "speech", seconds),
        "commands": np.concatenate(speech.wake_stream(repeats, WAKE_TAIL_S)),
    }
    streams = [process.make_stream(name, audio, fresh()) for name, audio in sources.items()]
    with Broker(workdir / "process-broker", port=_config_port(config)) as broker:
        report = process.measure(
            workdir,
            config,
            broker=broker,
            fresh=fresh,
            streams=streams,
            models_dir=settings.models.dir,
        )
    report["cli_help"] = process.cli_help()
    return report


def _config_port(config: Path) -> int:
    return load_settings(config).mqtt.port


def _summary(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50": round(live.percentile(values, 50), 1),
        "p95": round(live.percentile(values, 95), 1),
        "max": round(max(values, default=float("nan")), 1),
        "all": [round(v, 1) for v in values],
    }


def measure_offline_tools(
    config: Path, settings: Settings, speech: Speech, wav: Path, plan: Plan
) -> dict[str, Any]:
    """Peak RSS of the bare engines in one process, of the satellite's engines alone hearing
    the live part's commands, and `satellite simulate` speed."""
    silence = np.zeros(3 * SAMPLE_RATE, np.int16)
    save_wav(wav, np.concatenate([speech.wake, silence, speech.no_wake, speech.wake, silence]))
    command = wav.with_name("command.wav")  # the clip the daemon hears in the live part
    save_wav(command, speech.wake)
    models = settings.models.dir
    return {
        "bare_peak_rss_mb": round(live.bare_peak_rss_kb(models, wav) / 1024, 1),
        "lean_engines_peak_rss_mb": round(
            live.bare_peak_rss_kb(models, command, lean_sessions=plan.commands) / 1024, 1
        ),
        "simulate": live.simulate_speed(config, wav),
    }


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target as value, limit, PASS/MISS and margin (positive = headroom)."""
    rows: list[tuple[str, float | None, float, str, str]] = []
    if "cpu" in report:
        c = report["cpu"]
        rows += [
            ("wake CPU, silence (× bare oww)", c["wake_silence"]["ratio"], 1.15, "≤", "×"),
            (
                "wake CPU, speech no wake (× bare)",
                c["wake_speech_no_wake_word"]["ratio"],
                1.15,
                "≤",
                "×",
            ),
            (
                "wake CPU, speech + wake (× bare)",
                c["wake_speech_with_wake_word"]["ratio"],
                1.15,
                "≤",
                "×",
            ),
            ("listening CPU (× bare oww+Vosk)", c["listening_stage"]["ratio"], 1.15, "≤", "×"),
            ("silence gate, silence (× bare oww)", c["gate_silence"]["ratio"], 0.2, "≤", "×"),
        ]
    if "live" in report:
        lv = report["live"]
        trailing_ms = lv["trailing_silence_s"] * 1000 + 100
        rows += [
            ("wake→wake_detected p95", lv["wake_ms"]["p95"], 30.0, "≤", "ms"),
            ("end of speech→final p95", lv["final_ms"]["p95"], trailing_ms, "≤", "ms"),
            ("start→READY p50", lv["ready_p50_s"], 3.0, "≤", "s"),
        ]
    if "live" in report and "offline" in report:
        rss = report["live"]["satellite_peak_rss_mb"] - report["offline"]["bare_peak_rss_mb"]
        rows.append(("peak RSS − bare", rss, 40.0, "≤", "MB"))
    if "live" in report:
        rows.append(("daemon peak RSS", report["live"]["satellite_peak_rss_mb"], 250.0, "≤", "MB"))
    if "lean_engines_peak_rss_mb" in report.get("offline", {}):
        lean = report["offline"]["lean_engines_peak_rss_mb"]
        rows.append(("engines alone, loaded lean, peak RSS", lean, 250.0, "≤", "MB"))
    if "offline" in report:
        rows.append(("simulate speed", report["offline"]["simulate"]["speed_x"], 4.0, "≥", "×"))
    if "process" in report:
        rows += process_rows(report["process"])
    return [_verdict(*row) for row in rows]


def process_rows(pr: dict[str, Any]) -> list[tuple[str, float | None, float, str, str]]:
    """The whole-process targets (false wakes are counted apart, not held against CPU)."""
    speech, tone, near, cmds = (
        pr[name] for name in ("speech_no_wake_word", "room_tone", "speech_near_misses", "commands")
    )
    return [
        ("run: speech no wake (× bare oww)", speech["daemon_x_bare_oww"], 1.10, "≤", "×"),
        ("run: speech no wake (× paced oww)", speech["daemon_x_paced_bare_oww"], 1.10, "≤", "×"),
        ("simulate: speech no wake (× oww)", speech["simulate_x_bare_oww"], 1.10, "≤", "×"),
        ("run: room tone (× bare oww)", tone["daemon_x_bare_oww"], 0.2, "≤", "×"),
        ("run: room tone (× paced oww)", tone["daemon_x_paced_bare_oww"], 0.2, "≤", "×"),
        ("simulate: room tone (× bare oww)", tone["simulate_x_bare_oww"], 0.2, "≤", "×"),
        ("run: commands (× oww+Vosk)", cmds["daemon_x_bare_oww_vosk"], 1.10, "≤", "×"),
        ("simulate: commands (× oww+Vosk)", cmds["simulate_x_bare_oww_vosk"], 1.10, "≤", "×"),
        (
            f"run: near misses, {near['daemon_wakes']} false wakes' Vosk apart",
            near["daemon_minus_sessions_vosk_x_bare_oww"],
            1.10,
            "≤",
            "×",
        ),
        ("satellite --help wall p50", pr["cli_help"]["wall_p50_s"], 0.15, "≤", "s"),
        ("satellite --help peak RSS", pr["cli_help"]["peak_rss_mb"], 40.0, "≤", "MB"),
    ]


def _verdict(name: str, value: float | None, limit: float, op: str, unit: str) -> dict[str, Any]:
    if value is None or math.isnan(value):  # not measurable (NaN or absent)
        return {
            "target": name,
            "value": None,
            "limit": limit,
            "op": op,
            "unit": unit,
            "status": "n/a",
        }
    margin = limit - value if op == "≤" else value - limit
    status = "PASS" if margin >= 0 else "MISS"
    return {
        "target": name,
        "value": round(value, 3),
        "limit": round(limit, 3),
        "op": op,
        "unit": unit,
        "status": status,
        "margin": round(margin, 3),
    }


def table(rows: list[dict[str, Any]]) -> str:
    """The short human table."""
    lines = [f"{'target':36} {'value':>10} {'limit':>12}  verdict"]
    for row in rows:
        value = "n/a" if row["value"] is None else f"{row['value']:g} {row['unit']}"
        limit = f"{row['op']} {row['limit']:g} {row['unit']}"
        verdict = row["status"]
        if row["status"] != "n/a":
            word = "margin" if row["status"] == "PASS" else "by"
            verdict += f" ({word} {abs(row['margin']):g} {row['unit']})"
        lines.append(f"{row['target']:36} {value:>10} {limit:>12}  {verdict}")
    return "\n".join(lines)


PARTS = ("cpu", "offline", "live", "process")


def run(plan: Plan, quick: bool, parts: tuple[str, ...] = PARTS) -> dict[str, Any]:
    """Every figure, in one run."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="satellite-bench-") as tmp:
        workdir = Path(tmp)
        speech = Speech(workdir / "speech")
        config = room_config(workdir / "salon.toml", port=_free_port())
        settings = load_settings(config)
        report: dict[str, Any] = {"mode": "quick" if quick else "full", "machine": machine_info()}
        if "cpu" in parts:
            report["cpu"] = measure_cpu(settings, speech, plan)
        if "offline" in parts:
            wav = workdir / "mix.wav"
            report["offline"] = measure_offline_tools(config, settings, speech, wav, plan)
        if "live" in parts:
            report["live"] = measure_live(workdir, config, settings, speech, plan)
        if "process" in parts:
            report["process"] = measure_process(workdir, config, settings, speech, plan)
    report["targets"] = targets(report)
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    return report


def _free_port() -> int:
    from tests.support.broker import free_port

    return free_port()


def main(argv: list[str] | None = None) -> int:
    """Parse options, run, print the JSON report then the table; a miss never fails."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="less audio, 5 commands (< 3 min)")
    parser.add_argument("--json", type=Path, help="also write the JSON report to FILE")
    parser.add_argument(
        "--only", choices=PARTS, action="append", help="run only this part (repeatable)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    report = run(QUICK if args.quick else FULL, args.quick, tuple(args.only or PARTS))
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n", encoding="utf-8")
    info = report["machine"]
    print(
        f"\n{info['cpu_model']}, nproc {info['nproc']}, {report['mode']} run, "
        f"{report['elapsed_s']} s"
    )
    print(table(report["targets"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
