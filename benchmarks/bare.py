"""The floor: bare openWakeWord and Vosk loops, loaded from the same model files.

`python -m benchmarks.bare MODELS_DIR WAV` loads both engines in one process, runs the WAV
through them and prints its peak RSS (the reference for the satellite's).
`python -m benchmarks.bare --lean N MODELS_DIR WAV` is the memory floor of the satellite's own
engines: openWakeWord and Vosk loaded as the satellite loads them, nothing else (no MQTT, no
settings, no threads), the WAV heard N times as N sessions (a fresh recogniser each, partials
every frame, as the session machine does).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from satellite.audio.speech import seed_dither
from satellite.core.frames import SAMPLE_RATE, Frame
from satellite.modelfiles import feature_model_paths, vosk_model_path, wake_model_path
from satellite.modelfiles.sources import VOSK_MODEL


class BareEngines:
    """openWakeWord (ONNX) and Vosk exactly as their READMEs use them, nothing around them."""

    def __init__(self, models_dir: Path, wake_models: list[str], vosk_model: str) -> None:
        import vosk
        from openwakeword.model import Model

        melspec, embedding = feature_model_paths(models_dir)
        self.oww = Model(
            wakeword_models=[str(wake_model_path(models_dir, name)) for name in wake_models],
            inference_framework="onnx",
            melspec_model_path=str(melspec),
            embedding_model_path=str(embedding),
        )
        vosk.SetLogLevel(-1)
        self._vosk = vosk
        self.vosk_model = vosk.Model(str(vosk_model_path(models_dir, vosk_model)))
        self.recognizer: Any = None

    def wake(self, frame: Frame) -> float:
        """The best wake score for one frame."""
        scores: dict[str, float] = self.oww.predict(frame)
        return max(scores.values())

    def start_stt(self) -> None:
        """A fresh recogniser for a new utterance, its dither seeded as the satellite's."""
        seed_dither()
        self.recognizer = self._vosk.KaldiRecognizer(self.vosk_model, SAMPLE_RATE)

    def stt(self, frame: Frame) -> str:
        """AcceptWaveform, then the result or the partial, as a streaming client does."""
        if self.recognizer.AcceptWaveform(frame.tobytes()):
            return str(self.recognizer.Result())
        return str(self.recognizer.PartialResult())

    def finish_stt(self) -> str:
        """Flush the recogniser."""
        return str(self.recognizer.FinalResult())


def peak_rss_kb(pid: int | str = "self") -> int:
    """VmHWM (peak resident set size) of a process, in kB."""
    return _status_kb(pid, "VmHWM")


def rss_kb(pid: int | str = "self") -> int:
    """VmRSS (resident set size now) of a process, in kB."""
    return _status_kb(pid, "VmRSS")


def _status_kb(pid: int | str, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


def lean_floor(models_dir: Path, frames: list[Frame], sessions: int) -> None:
    """The satellite's engines, loaded lean, hearing `frames` as `sessions` sessions."""
    from satellite.audio.stand_ins import DOWNLOADS, import_with_stand_ins
    from satellite.audio.wake import OwwDetector

    melspec, embedding = feature_model_paths(models_dir)
    wake = OwwDetector(
        models={"hey_jarvis": wake_model_path(models_dir, "hey_jarvis")},
        melspec=melspec,
        embedding=embedding,
        threshold=0.5,
        patience=1,
        noise_suppression=False,
    )
    vosk = import_with_stand_ins("vosk", DOWNLOADS)
    vosk.SetLogLevel(-1)
    model = vosk.Model(str(vosk_model_path(models_dir, VOSK_MODEL)))
    for _ in range(sessions):
        recognizer = vosk.KaldiRecognizer(model, SAMPLE_RATE)
        recognizer.SetWords(True)
        recognizer.SetPartialWords(True)
        for frame in frames:
            wake.process(frame)
            if not recognizer.AcceptWaveform(frame.tobytes()):
                recognizer.PartialResult()
        recognizer.FinalResult()


def main(argv: list[str]) -> int:
    """Load both engines, run the WAV through both, print {"vmhwm_kb": ...}."""
    from satellite.commands.simulate import read_wav

    if argv[0] == "--lean":
        lean_floor(Path(argv[2]), read_wav(Path(argv[3])), int(argv[1]))
        print(json.dumps({"vmhwm_kb": peak_rss_kb()}))
        return 0
    models_dir, wav = Path(argv[0]), Path(argv[1])
    engines = BareEngines(models_dir, ["hey_jarvis"], VOSK_MODEL)
    engines.start_stt()
    for frame in read_wav(wav):
        engines.wake(frame)
        engines.stt(frame)
    engines.finish_stt()
    print(json.dumps({"vmhwm_kb": peak_rss_kb()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
