"""Builds the session machine from the settings (shared by run, simulate and listen)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from satellite.audio.gate import EnergyGate, GatedDetector
from satellite.audio.speech import VoskTranscriber
from satellite.audio.wake import OwwDetector, ScoreTap
from satellite.config import Settings
from satellite.core.session import SessionMachine, SessionTiming, WakeDetector
from satellite.core.utterance import UtteranceTuning, VoiceEnd
from satellite.modelfiles import feature_model_paths, vosk_model_path, wake_model_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Engines:
    """The loaded models, the slow part of a session machine (seconds, ~100 MB): a reload
    builds a new machine around them unless a setting in `engine_key` changed."""

    key: tuple[object, ...]
    wake: OwwDetector
    stt: VoskTranscriber


def engine_key(settings: Settings) -> tuple[object, ...]:
    """The settings that decide which models are loaded, and how."""
    wake, stt = settings.wake, settings.stt
    return (
        settings.models.dir,
        tuple(wake.models),
        wake.noise_suppression,
        stt.model,
        tuple(stt.phrases),
    )


def load_engines(settings: Settings, *, on_scores: ScoreTap | None = None) -> Engines:
    """Load the wake and speech models named by the settings (ModelError if they do not load);
    `on_scores` taps the wake scores of every frame scored."""
    models_dir = settings.models.dir
    log.info("loading the wake and speech models from %s", models_dir)
    melspec, embedding = feature_model_paths(models_dir)
    wake = settings.wake
    oww = OwwDetector(
        models={name: wake_model_path(models_dir, name) for name in wake.models},
        melspec=melspec,
        embedding=embedding,
        threshold=wake.threshold,
        patience=wake.patience,
        noise_suppression=wake.noise_suppression,
        on_scores=on_scores,
    )
    transcriber = VoskTranscriber(
        model_path=vosk_model_path(models_dir, settings.stt.model),
        tuning=UtteranceTuning(),
        phrases=settings.stt.phrases,
        wake_words=wake_phrase_words(wake.models),
    )
    return Engines(engine_key(settings), oww, transcriber)


def build_gate(settings: Settings) -> EnergyGate | None:
    """The silence gate in front of the wake models, if the settings turn it on."""
    wake = settings.wake
    if not wake.gate:
        return None
    return EnergyGate(margin_db=wake.gate_margin_db, hangover_s=wake.gate_hangover_s)


def build_machine(
    settings: Settings, engines: Engines | None = None, *, gate: EnergyGate | None = None
) -> SessionMachine:
    """The session machine with the real wake and STT engines (loaded now unless given).

    Given `engines` are retuned to the settings and reset: call this on the thread that
    runs them (the pipeline's), never while another machine still uses them. `gate` is the
    silence gate to use when the settings turn it on (a new one by default).
    """
    if engines is None:
        engines = load_engines(settings)
    wake = settings.wake
    oww = engines.wake
    oww.threshold, oww.patience = wake.threshold, wake.patience
    oww.reset()
    detector: WakeDetector = oww
    gate = (gate or build_gate(settings)) if wake.gate else None
    if gate is not None:
        detector = GatedDetector(oww, gate)
    voice = VoiceEnd(tuning=UtteranceTuning())  # no setting changes it: its defaults are the values
    return SessionMachine(
        detector=detector, transcriber=engines.stt, timing=session_timing(settings), voice=voice
    )


def reload_machine(
    settings: Settings, engines: Engines, old: SessionMachine, *, same_engines: bool
) -> SessionMachine:
    """A reload's session machine, hearing on from `old` (idle): see `retune_machine`. New
    engines start their detector's history at the swap: a wake word said across it is lost."""
    if same_engines:
        return retune_machine(settings, engines, old)
    return old.hand_over(build_machine(settings, engines))


def retune_machine(settings: Settings, engines: Engines, old: SessionMachine) -> SessionMachine:
    """A machine with the tuning of `settings` on the engines `old` (idle) runs, hearing on as
    if nothing had changed, so a wake word being said at that moment still wakes: the same
    detector (its history, its silence gate's floor and held frames) and voice tracker, and
    `old`'s pre-roll, refractory period and mute. Call it on the pipeline thread."""
    wake = settings.wake
    oww = engines.wake
    oww.threshold, oww.patience = wake.threshold, wake.patience
    detector = old.detector
    if isinstance(detector, GatedDetector) and wake.gate:
        detector.gate.retune(margin_db=wake.gate_margin_db, hangover_s=wake.gate_hangover_s)
    elif isinstance(detector, GatedDetector):
        detector = detector.unwrap()
    elif wake.gate:
        gate = EnergyGate(margin_db=wake.gate_margin_db, hangover_s=wake.gate_hangover_s)
        gate.hold_open()  # the voice may be speaking now
        detector = GatedDetector(oww, gate)
    timing = session_timing(settings)
    machine = SessionMachine(
        detector=detector, transcriber=engines.stt, timing=timing, voice=old.voice
    )
    return old.hand_over(machine)


def session_timing(settings: Settings) -> SessionTiming:
    """The session machine's end-of-utterance and re-arm rules, from the settings."""
    stt = settings.stt
    return SessionTiming(
        preroll_s=stt.preroll_s,
        trailing_silence_s=stt.trailing_silence_s,
        max_utterance_s=stt.max_utterance_s,
        no_speech_timeout_s=stt.no_speech_timeout_s,
        refractory_s=settings.wake.refractory_s,
    )


def wake_phrase_words(models: list[str]) -> set[str]:
    """The words of the wake phrases, from model names: "hey_jarvis_v0.1.onnx" -> hey, jarvis."""
    words: set[str] = set()
    for name in models:
        words.update(w for w in re.split(r"[^a-z]+", Path(name).stem.lower()) if len(w) > 1)
    return words


def client_id(settings: Settings) -> str:
    """Unique per satellite, stable across restarts so the broker replaces a stale session."""
    return f"satellite-{settings.room_id}-{settings.satellite_id}"
