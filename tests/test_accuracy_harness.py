"""The accuracy harness (benchmarks.accuracy): WER, the corpus, SNR mixing, one real clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks import accuracy
from benchmarks.corpus import Corpus, CorpusSpec, active_power, load_or_build, plan_clips
from benchmarks.metrics import detected_session
from benchmarks.replay import Runner
from benchmarks.sweep import Rules, ScoreTrace, detections
from benchmarks.wer import corpus_wer, normalise, wer, word_errors
from satellite.core.frames import SAMPLE_RATE

COMMAND = "turn on the kitchen lights"
TINY = CorpusSpec(
    commands=(COMMAND,),
    near_misses=("hey travis",),
    voices=("en-us+m7",),  # tests.support.speech: this voice and speed transcribe reliably
    speeds=(170,),
    stride=1,
    long_stream_s=4.0,
    noise_bed_s=4.0,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return load_or_build(TINY, tmp_path_factory.mktemp("accuracy"))


def test_wer_counts_substitutions_deletions_and_insertions() -> None:
    assert word_errors("turn on the lights", "turn on the lights") == 0
    assert word_errors("turn on the lights", "third on the lights") == 1
    assert word_errors("turn on the lights", "on the lights") == 1
    assert word_errors("turn on the lights", "turn on all the lights now") == 2
    assert word_errors("a b c", "") == 3
    assert wer("what time is it", "what time in it") == 0.25
    assert wer("", "") == 0.0
    assert corpus_wer([("a b", "a b"), ("c d e f", "c x e")]) == pytest.approx(2 / 6)


def test_wer_ignores_case_and_punctuation() -> None:
    assert normalise("Hey  Jarvis, what's UP?") == "hey jarvis what's up"
    assert word_errors("What time is it?", "what time is it") == 0


def test_corpus_plan_is_deterministic_and_balanced() -> None:
    spec = CorpusSpec(stride=2, long_stream_s=60.0)
    clips = plan_clips(spec)
    assert clips == plan_clips(CorpusSpec(stride=2, long_stream_s=60.0))
    assert spec.key() == CorpusSpec(stride=2, long_stream_s=60.0).key()
    assert spec.key() != CorpusSpec(stride=2, long_stream_s=61.0).key()
    positives = [c for c in clips if c.kind == "positive"]
    for command in spec.commands:
        conditions = {c.condition for c in positives if c.expected == command}
        assert conditions == {"clean", "20 dB", "10 dB", "5 dB"}
    noisy = {c.noise for c in positives if c.snr_db == 5.0}
    assert noisy == set(spec.noises)
    assert all(c.text.startswith("hey jarvis, ") for c in positives)


def test_corpus_is_cached_and_renders_the_same_samples(corpus: Corpus) -> None:
    manifest = corpus.directory / "manifest.json"
    written = manifest.stat().st_mtime_ns
    again = load_or_build(TINY, corpus.directory.parent)
    assert manifest.stat().st_mtime_ns == written
    assert again.clips == corpus.clips and again.stream == corpus.stream
    clip = corpus.positives[-1]
    assert np.array_equal(corpus.render(clip).samples, again.render(clip).samples)
    assert len(corpus.render_stream()) >= TINY.long_stream_s * SAMPLE_RATE


@pytest.mark.parametrize("snr_db", [20.0, 10.0, 5.0])
def test_noise_is_mixed_at_the_asked_snr(corpus: Corpus, snr_db: float) -> None:
    for clip in (c for c in corpus.clips if c.snr_db == snr_db):
        rendered = corpus.render(clip)
        speech = corpus.speech(clip.text, clip.voice, clip.speed)
        pre = round(TINY.pre_s * SAMPLE_RATE)
        placed = np.zeros(len(rendered.samples))
        placed[pre : pre + len(speech)] = speech
        noise = rendered.samples.astype(np.float64) - placed
        measured = 10 * np.log10(active_power(speech) / np.mean(noise**2))
        assert measured == pytest.approx(snr_db, abs=0.5), (clip.noise, measured)
        assert rendered.speech_start >= pre and rendered.speech_end < rendered.clip_samples


def test_sweep_needs_patience_frames_in_a_row_and_respects_refractory() -> None:
    scores = [0.1, 0.6, 0.1, 0.6, 0.6, 0.6, 0.1, 0.1, 0.6, 0.6, 0.6, 0.6]
    trace = ScoreTrace(np.arange(len(scores), dtype=np.int32), np.array(scores, np.float32))
    assert detections(trace, Rules(0.5, 1, 0, 0)) == [1, 3, 4, 5, 8, 9, 10, 11]
    assert detections(trace, Rules(0.5, 2, 0, 0)) == [4, 9, 11]
    assert detections(trace, Rules(0.5, 2, 1, 2)) == [4, 9]
    assert detections(trace, Rules(0.5, 2, 1, 4)) == [4, 10]  # fires as the refractory ends


def test_set_overrides_any_setting_and_rejects_bad_ones(tmp_path: Path) -> None:
    settings = accuracy.base_settings(tmp_path)
    changed = accuracy.apply_overrides(settings, ["wake.threshold=0.6", "stt.model=other"])
    assert changed.wake.threshold == 0.6 and changed.stt.model == "other"
    for bad in ("wake.threshold=2", "wake.nope=1", "nope.x=1", "wake.threshold"):
        with pytest.raises(accuracy.OverrideError):
            accuracy.apply_overrides(settings, [bad])


def test_bad_set_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert accuracy.main(["--set", "wake.threshold=abc"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "wake.threshold" in err


@pytest.mark.integration
def test_positive_clip_through_the_real_pipeline(corpus: Corpus, tmp_path: Path) -> None:
    runner = Runner(accuracy.base_settings(tmp_path), corpus, sweep=True)
    clip = next(c for c in corpus.positives if c.snr_db is None)
    run = runner.clip(clip)
    session = detected_session(run)
    assert session is not None, run.sessions
    assert session.text == COMMAND
    assert run.trace is not None
    assert float(run.trace.scores.max()) >= runner.settings.wake.threshold
    assert run.floor_text == COMMAND
