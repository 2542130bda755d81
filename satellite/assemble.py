"""Builds the session machine and outbox from the settings (shared by run and simulate)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from satellite.config import Settings
from satellite.gate import EnergyGate, GatedDetector, VoiceEnd
from satellite.models import feature_model_paths, vosk_model_path, wake_model_path
from satellite.outbox import Outbox
from satellite.session import SessionMachine, SessionTiming, WakeDetector
from satellite.stt import VoskTranscriber
from satellite.topics import Topics
from satellite.wake import OwwDetector

log = logging.getLogger(__name__)


def build_machine(settings: Settings) -> SessionMachine:
    """The session machine with the real wake and STT engines from the models directory."""
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
    )
    detector: WakeDetector = oww
    if wake.gate:
        gate = EnergyGate(margin_db=wake.gate_margin_db, hangover_s=wake.gate_hangover_s)
        detector = GatedDetector(oww, gate)
    transcriber = VoskTranscriber(
        model_path=vosk_model_path(models_dir, settings.stt.model),
        phrases=settings.stt.phrases,
        wake_words=wake_phrase_words(wake.models),
    )
    stt = settings.stt
    timing = SessionTiming(
        preroll_s=stt.preroll_s,
        trailing_silence_s=stt.trailing_silence_s,
        max_utterance_s=stt.max_utterance_s,
        no_speech_timeout_s=stt.no_speech_timeout_s,
        refractory_s=settings.wake.refractory_s,
    )
    return SessionMachine(
        detector=detector, transcriber=transcriber, timing=timing, voice=VoiceEnd()
    )


def wake_phrase_words(models: list[str]) -> set[str]:
    """The words of the wake phrases, from model names: "hey_jarvis_v0.1.onnx" -> hey, jarvis."""
    words: set[str] = set()
    for name in models:
        words.update(w for w in re.split(r"[^a-z]+", Path(name).stem.lower()) if len(w) > 1)
    return words


def build_outbox(settings: Settings) -> Outbox:
    """Topics and message stamping for this room and satellite."""
    topics = Topics(
        room_id=settings.room_id, satellite_id=settings.satellite_id, mqtt=settings.mqtt
    )
    return Outbox(room_id=settings.room_id, topics=topics)


def client_id(settings: Settings) -> str:
    """Unique per satellite, stable across restarts so the broker replaces a stale session."""
    return f"satellite-{settings.room_id}-{settings.satellite_id}"
