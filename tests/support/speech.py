"""Synthetic speech for tests: espeak-ng, converted by sox to 16 kHz mono int16, cached."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

RATE = 16000
# Vosk's small English model is sensitive to where 30 ms decoding frames fall on synthetic
# speech: with espeak's default voice at 150 wpm, "turn on the kitchen lights" came out
# exactly in only 21 of 32 alignments ("third on ...", "of ..."). This voice and speed came
# out exactly in 36 of 36 alignments after "hey jarvis", so live tests do not depend on luck.
VOICE = "en-us+m7"
SPEED = 170


def speak(
    text: str, *, cache_dir: Path, voice: str = VOICE, speed: int = SPEED
) -> npt.NDArray[np.int16]:
    """`text` spoken at 16 kHz mono with 0.5 s of silence before and after."""
    key = hashlib.sha256(json.dumps([text, voice, speed]).encode()).hexdigest()[:24]
    path = cache_dir / f"speech-{key}.wav"
    if not path.exists():
        _synthesise(text, voice, speed, path)
    samples, rate = load_wav(path)
    if rate != RATE or samples.ndim != 1:
        raise AssertionError(f"{path}: expected 16 kHz mono, got {rate} Hz, shape {samples.shape}")
    return samples


def _synthesise(text: str, voice: str, speed: int, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        raw, out = Path(tmp) / "espeak.wav", Path(tmp) / "out.wav"
        # --stdin: text starting with "-" must not be taken for an option.
        _run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), "--stdin"], text)
        # -R: repeatable dither, so the same text always gives the same samples.
        sox = ["sox", "-R", str(raw), "-r", str(RATE), "-c", "1", "-b", "16"]
        _run([*sox, "-e", "signed-integer", str(out), "pad", "0.5", "0.5"])
        os.replace(out, path)  # atomic: a concurrent reader sees all or nothing


def _run(command: list[str], stdin: str = "") -> None:
    result = subprocess.run(
        command, input=stdin.encode(), capture_output=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"{command[0]} failed ({result.returncode}): {result.stderr!r}")


def save_wav(path: Path, samples: npt.NDArray[np.int16], rate: int = RATE) -> None:
    """Write int16 samples (1-D mono, or shape (frames, channels)) as a WAV file."""
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.ascontiguousarray(samples, dtype="<i2").tobytes())


def load_wav(path: Path) -> tuple[npt.NDArray[np.int16], int]:
    """(samples, rate) of a 16-bit WAV: 1-D if mono, else shape (frames, channels)."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: {8 * wav.getsampwidth()}-bit, expected 16-bit")
        channels, rate = wav.getnchannels(), wav.getframerate()
        data = wav.readframes(wav.getnframes())
    samples = np.frombuffer(data, dtype="<i2").astype(np.int16)
    return (samples if channels == 1 else samples.reshape(-1, channels)), rate
