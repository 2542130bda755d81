"""The accuracy corpus: "hey jarvis, <command>", near-misses and a long non-wake stream, in noise.

Everything is generated from a `CorpusSpec`: espeak-ng speech (cached per text, voice and speed
by `tests.support.speech.speak`, shared by every corpus), sox noise beds, and a manifest
listing every clip and the long stream's sentences, in `.cache/accuracy/corpus-<spec hash>/`.
Clips are rendered from those parts on demand (speech added onto a bed of noise at the asked
SNR), so the cache stays small and a clip is the same samples every time.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.signals import VOICED_RMS, VOICED_WINDOW, Samples, room_tone
from benchmarks.texts import COMMANDS, LONG_SPEEDS, NEAR_MISSES, WAKE_PHRASE, sentences
from satellite.core.frames import SAMPLE_RATE
from tests.support.speech import load_wav, save_wav, speak

CORPUS_VERSION = 2
# espeak-ng's own voices and variants (no mbrola): American and British, male and female.
VOICES = (
    "en-us",
    "en-us+m3",
    "en-us+f2",
    "en-us+f4",
    "en-us+m7",
    "en-gb",
    "en-gb-x-rp",
    "en-gb-scotland+f3",
)
SPEEDS = (150, 175)
SNRS_DB = (20.0, 10.0, 5.0)
NOISES = ("pink", "brown", "white", "babble")
CLEAN = "room"  # clean clips sit on the benchmarks' room tone
BABBLE_TALKERS = 5
PEAK_LIMIT = 32000.0  # a mix louder than this is scaled down as a whole (the SNR is kept)

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class CorpusSpec:
    """What to generate; the hash of these fields names the cache directory."""

    commands: tuple[str, ...] = COMMANDS
    near_misses: tuple[str, ...] = NEAR_MISSES
    voices: tuple[str, ...] = VOICES
    speeds: tuple[int, ...] = SPEEDS
    snrs_db: tuple[float, ...] = SNRS_DB
    noises: tuple[str, ...] = NOISES
    stride: int = 2  # keep 1 in `stride` of the text x voice x speed x condition grid
    long_stream_s: float = 3600.0  # continuous non-wake speech, seconds
    pre_s: float = 3.0  # noise before each clip's speech, seconds
    tail_s: float = 6.0  # noise after it, seconds
    noise_bed_s: float = 60.0  # length of each noise recording clips are cut from, seconds
    seed: int = 0
    version: int = CORPUS_VERSION

    def key(self) -> str:
        """A short, stable hash of every field."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


QUICK = CorpusSpec(stride=4, long_stream_s=900.0)
FULL = CorpusSpec(stride=2, long_stream_s=3600.0)


@dataclass(frozen=True)
class Clip:
    """One utterance in one voice, speed and noise condition."""

    id: str
    kind: str  # "positive" or "near_miss"
    text: str  # what espeak says
    expected: str  # the command a positive should be transcribed as; the phrase of a near-miss
    voice: str
    speed: int
    noise: str  # CLEAN or one of NOISES
    snr_db: float | None  # None on clean clips
    seed: int

    @property
    def condition(self) -> str:
        """Either clean or the SNR, e.g. "10 dB"."""
        return "clean" if self.snr_db is None else f"{self.snr_db:g} dB"


@dataclass(frozen=True)
class Sentence:
    """One sentence of the long stream and the pause of room tone after it."""

    text: str
    voice: str
    speed: int
    pause_s: float


@dataclass(frozen=True)
class Rendered:
    """A clip's samples and where its speech is (voiced samples, inclusive)."""

    samples: Samples
    speech_start: int
    speech_end: int
    clip_samples: int  # pre + speech + tail; anything after is extra noise


def plan_clips(spec: CorpusSpec) -> list[Clip]:
    """Positives then near-misses, over a balanced 1-in-`stride` subset of the full grid."""
    positives = [f"{WAKE_PHRASE}, {command}" for command in spec.commands]
    return [
        *_grid(spec, "positive", positives, list(spec.commands)),
        *_grid(spec, "near_miss", list(spec.near_misses), list(spec.near_misses)),
    ]


def _conditions(spec: CorpusSpec) -> list[float | None]:
    return [None, *spec.snrs_db]


def _grid(spec: CorpusSpec, kind: str, texts: list[str], expected: list[str]) -> list[Clip]:
    """Every text appears in every condition and every voice; noise kinds rotate per SNR."""
    clips: list[Clip] = []
    noisy_count: dict[float, int] = {}
    conditions = _conditions(spec)
    for v, voice in enumerate(spec.voices):
        for s, speed in enumerate(spec.speeds):
            for c, snr in enumerate(conditions):
                for t, text in enumerate(texts):
                    if (t + v + s + c) % spec.stride:
                        continue
                    noise = CLEAN
                    if snr is not None:
                        n = noisy_count[snr] = noisy_count.get(snr, -1) + 1
                        noise = spec.noises[n % len(spec.noises)]
                    clip_id = f"{kind}-{len(clips):04d}"
                    seed = _seed(spec.seed, clip_id)
                    clips.append(
                        Clip(clip_id, kind, text, expected[t], voice, speed, noise, snr, seed)
                    )
    return clips


def _seed(base: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{base}:{name}".encode()).digest()[:4], "big")


def _plan_sentences(spec: CorpusSpec, seed: int) -> Iterator[Sentence]:
    """Sentences with a voice, a speed and a pause each; the same sequence for the same seed."""
    rng = random.Random(seed)
    speeds = (*spec.speeds, *LONG_SPEEDS)
    for text in sentences(seed):
        pause_s = round(rng.uniform(0.2, 1.5), 2)
        yield Sentence(text, rng.choice(spec.voices), rng.choice(speeds), pause_s)


# --- signal helpers ---


def voiced_span(samples: Samples) -> tuple[int, int]:
    """First and last sample (inclusive) of the voiced 10 ms windows."""
    voiced = np.flatnonzero(_window_rms(samples) > VOICED_RMS)
    if not len(voiced):
        raise ValueError("no voiced audio")
    return int(voiced[0] * VOICED_WINDOW), int((voiced[-1] + 1) * VOICED_WINDOW - 1)


def _window_rms(samples: npt.NDArray[Any]) -> Floats:
    windows = len(samples) // VOICED_WINDOW
    blocks = samples[: windows * VOICED_WINDOW].astype(np.float64).reshape(windows, -1)
    return np.asarray(np.sqrt((blocks**2).mean(axis=1)), np.float64)


def active_power(speech: npt.NDArray[Any]) -> float:
    """Mean power of the voiced 10 ms windows (the speech level an SNR is measured against)."""
    rms = _window_rms(speech)
    voiced = rms[rms > VOICED_RMS]
    if not len(voiced):
        raise ValueError("no voiced audio")
    return float((voiced**2).mean())


def noise_at_snr(speech: Samples, noise: npt.NDArray[Any], snr_db: float) -> Floats:
    """`noise` scaled so that speech's active power over its mean power is `snr_db`."""
    noise_power = float(np.mean(np.asarray(noise, np.float64) ** 2))
    gain = float(np.sqrt(active_power(speech) / (noise_power * 10 ** (snr_db / 10))))
    return np.asarray(noise, np.float64) * gain


def to_int16(mix: Floats) -> Samples:
    """Rounded to int16; a mix that would clip is scaled down as a whole first."""
    peak = float(np.max(np.abs(mix))) if len(mix) else 0.0
    if peak > PEAK_LIMIT:
        mix = mix * (PEAK_LIMIT / peak)
    return np.round(mix).astype(np.int16)


def _cut(bed: npt.NDArray[Any], length: int, seed: int) -> Floats:
    """`length` samples of `bed` from a seeded offset, wrapping around."""
    start = random.Random(seed).randrange(len(bed))
    return np.asarray(np.take(bed, np.arange(start, start + length), mode="wrap"), np.float64)


# --- generation and rendering ---


@dataclass
class Corpus:
    """A generated corpus: its spec, clips, long stream, and where the audio is cached."""

    spec: CorpusSpec
    directory: Path
    speech_dir: Path
    clips: list[Clip]
    stream: list[Sentence]
    _beds: dict[str, Samples] = field(default_factory=dict, repr=False)

    @property
    def positives(self) -> list[Clip]:
        """The "hey jarvis, <command>" clips."""
        return [clip for clip in self.clips if clip.kind == "positive"]

    @property
    def near_misses(self) -> list[Clip]:
        """The near-miss clips."""
        return [clip for clip in self.clips if clip.kind == "near_miss"]

    def clip(self, clip_id: str) -> Clip:
        """The clip with this id."""
        return next(clip for clip in self.clips if clip.id == clip_id)

    def speech(self, text: str, voice: str, speed: int) -> Samples:
        """Cached espeak-ng speech, 0.5 s of padding at both ends."""
        return speak(text, cache_dir=self.speech_dir, voice=voice, speed=speed)

    def bed(self, kind: str) -> Samples:
        """A noise recording (loaded once)."""
        if kind not in self._beds:
            self._beds[kind] = load_wav(self.directory / f"noise-{kind}.wav")[0]
        return self._beds[kind]

    def render(self, clip: Clip, *, extra_s: float = 0.0) -> Rendered:
        """pre_s of noise, the speech, tail_s of noise, then `extra_s` more of the same noise."""
        speech = self.speech(clip.text, clip.voice, clip.speed)
        pre = round(self.spec.pre_s * SAMPLE_RATE)
        clip_samples = pre + len(speech) + round(self.spec.tail_s * SAMPLE_RATE)
        total = clip_samples + round(extra_s * SAMPLE_RATE)
        placed = np.zeros(total, np.float64)
        placed[pre : pre + len(speech)] = speech
        if clip.snr_db is None:
            noise: Floats = room_tone(total / SAMPLE_RATE, seed=clip.seed)[:total].astype(float)
        else:
            bed = _cut(self.bed(clip.noise), total, clip.seed)
            noise = noise_at_snr(speech, bed, clip.snr_db)
        start, end = voiced_span(speech)
        return Rendered(to_int16(placed + noise), pre + start, pre + end, clip_samples)

    def render_command(self, clip: Clip) -> Samples:
        """The command of a positive spoken alone (same voice and speed) on room tone."""
        speech = self.speech(clip.expected, clip.voice, clip.speed).astype(np.float64)
        tone = room_tone(len(speech) / SAMPLE_RATE, seed=clip.seed)[: len(speech)]
        return to_int16(speech + tone)

    def render_stream(self) -> Samples:
        """The long stream: every sentence (padding trimmed), its pause, over room tone."""
        parts: list[Samples] = []
        for sentence in self.stream:
            speech = self.speech(sentence.text, sentence.voice, sentence.speed)
            start, end = voiced_span(speech)
            parts += [
                speech[start : end + 1],
                np.zeros(round(sentence.pause_s * SAMPLE_RATE), np.int16),
            ]
        voice = np.concatenate(parts).astype(np.float64)
        tone = room_tone(len(voice) / SAMPLE_RATE, seed=self.spec.seed)[: len(voice)]
        return to_int16(voice + tone)


def load_or_build(spec: CorpusSpec, root: Path, *, workers: int = 2) -> Corpus:
    """The corpus for `spec` under `root`, generated first if it is not cached."""
    directory = root / f"corpus-{spec.key()}"
    manifest = directory / "manifest.json"
    if not manifest.exists():
        _build(spec, directory, root / "speech", workers)
    return load(directory)


def load(directory: Path) -> Corpus:
    """A corpus from its manifest."""
    data = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    fields: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in data["spec"].items()
    }
    spec = CorpusSpec(**fields)
    return Corpus(
        spec=spec,
        directory=directory,
        speech_dir=Path(data["speech_dir"]),
        clips=[Clip(**clip) for clip in data["clips"]],
        stream=[Sentence(**sentence) for sentence in data["stream"]],
    )


def _build(spec: CorpusSpec, directory: Path, speech_dir: Path, workers: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    clips = plan_clips(spec)
    synth = _Synth(speech_dir, workers)
    synth.all([(clip.text, clip.voice, clip.speed) for clip in clips])
    synth.all([(c.expected, c.voice, c.speed) for c in clips if c.kind == "positive"])
    stream = _long_stream(spec, synth)
    for kind in spec.noises:
        _make_bed(spec, kind, directory / f"noise-{kind}.wav", synth)
    manifest = {
        "spec": asdict(spec),
        "speech_dir": str(speech_dir),
        "clips": [asdict(clip) for clip in clips],
        "stream": [asdict(sentence) for sentence in stream],
    }
    tmp = directory / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    tmp.replace(directory / "manifest.json")  # written last: its presence means complete


class _Synth:
    """espeak-ng through `speak`, several texts at a time (the work is in subprocesses)."""

    def __init__(self, speech_dir: Path, workers: int) -> None:
        self.speech_dir = speech_dir
        self.workers = workers

    def all(self, items: list[tuple[str, str, int]]) -> list[Samples]:
        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(self._one, items))

    def _one(self, item: tuple[str, str, int]) -> Samples:
        text, voice, speed = item
        return speak(text, cache_dir=self.speech_dir, voice=voice, speed=speed)


def _long_stream(spec: CorpusSpec, synth: _Synth) -> list[Sentence]:
    """Sentences (synthesised a batch at a time) until the stream is at least long_stream_s."""
    plan = _plan_sentences(spec, spec.seed)
    stream: list[Sentence] = []
    total_s = 0.0
    while total_s < spec.long_stream_s:
        batch = list(itertools.islice(plan, 64))
        for sentence, speech in zip(batch, synth.all(_items(batch)), strict=True):
            start, end = voiced_span(speech)
            total_s += (end + 1 - start) / SAMPLE_RATE + sentence.pause_s
            stream.append(sentence)
            if total_s >= spec.long_stream_s:
                break
    return stream


def _items(planned: list[Sentence]) -> list[tuple[str, str, int]]:
    return [(s.text, s.voice, s.speed) for s in planned]


def _make_bed(spec: CorpusSpec, kind: str, path: Path, synth: _Synth) -> None:
    if kind == "babble":
        save_wav(path, _babble(spec, synth))
        return
    seconds = f"{spec.noise_bed_s:g}"
    # -R: sox seeds its noise generator with a fixed value, so the bed is repeatable.
    command = ["sox", "-R", "-n", "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16"]
    command += ["-e", "signed-integer", str(path), "synth", seconds, f"{kind}noise", "vol", "0.3"]
    subprocess.run(command, check=True, capture_output=True, timeout=120)


def _babble(spec: CorpusSpec, synth: _Synth) -> Samples:
    """BABBLE_TALKERS streams of other sentences in different voices, summed."""
    length = round(spec.noise_bed_s * SAMPLE_RATE)
    mix = np.zeros(length, np.float64)
    for talker in range(BABBLE_TALKERS):
        plan = _plan_sentences(spec, spec.seed + 1000 + talker)
        speech = synth.all(_items(list(itertools.islice(plan, 4 + round(spec.noise_bed_s / 2)))))
        track = np.concatenate([s[slice(*_bounds(s))] for s in speech]).astype(np.float64)
        mix += np.resize(track, length)  # repeated if short
    return to_int16(mix * (8000.0 / max(1.0, float(np.sqrt(np.mean(mix**2))))))


def _bounds(speech: Samples) -> tuple[int, int]:
    start, end = voiced_span(speech)
    return start, end + 1
