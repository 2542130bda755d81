"""The benchmark commands run end to end on a little audio (their figures are not checked here:
speed is measured by running them, see benchmarks/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import gate, identity, run
from benchmarks.accuracy import base_settings
from benchmarks.corpus import Corpus, load_or_build
from tests.test_accuracy_harness import TINY

SMALL = run.Plan(silence_s=2, speech_s=3, wake_repeats=1, rounds=1, commands=1, process_s=6)


@pytest.mark.integration
def test_run_reports_every_target_against_its_floor() -> None:
    report = run.run(SMALL, quick=True)
    cpu = report["cpu"]
    for row in cpu.values():
        assert row["satellite_cpu_per_audio_s"] > 0 and row["bare_cpu_per_audio_s"] > 0, row
    # The wake command stream wakes the satellite once; the other streams never.
    assert cpu["listening_stage"]["satellite_sessions"] == 1
    assert cpu["wake_silence"]["satellite_sessions"] == 0
    live = report["live"]
    assert (live["sessions"], live["missed"], live["exact_transcripts"]) == (1, 0, 1)
    assert live["wake_ms"]["n"] == live["final_ms"]["n"] == 1
    assert report["offline"]["simulate"]["speed_x"] > 0
    # The memory floor: the engines alone; the daemon carries them and more.
    assert 0 < report["offline"]["lean_engines_peak_rss_mb"] < live["satellite_peak_rss_mb"]
    assert 0 < live["satellite_idle_rss_mb"] <= live["satellite_peak_rss_mb"]
    process = report["process"]
    commands = process["commands"]
    assert commands["sessions_offline"] == commands["daemon_wakes"] == 1
    assert commands["simulate_wakes"] == 1 and len(commands["bare_vosk_cpu_s_per_session"]) == 1
    assert commands["daemon_cpu_per_audio_s"] > commands["bare_oww_cpu_per_audio_s"] > 0
    assert process["room_tone"]["daemon_wakes"] == 0
    for name in ("room_tone", "speech_no_wake_word"):  # the wake stage, also vs a paced loop
        assert process[name]["bare_oww_paced_cpu_per_audio_s"] > 0
        assert process[name]["daemon_x_paced_bare_oww"] > 0
    assert set(process["profile_speech_no_wake_word"]) >= {"onnxruntime", "openwakeword"}
    assert 0 < process["cli_help"]["peak_rss_mb"] < 100
    rows = report["targets"]
    assert len(rows) == 23
    assert all(row["status"] in ("PASS", "MISS") for row in rows), rows
    table = run.table(rows)
    assert all(row["target"] in table for row in rows)


def test_a_target_row_says_pass_or_miss_and_by_how_much() -> None:
    def simulate(speed_x: float) -> dict[str, object]:
        (row,) = run.targets({"offline": {"simulate": {"speed_x": speed_x}}})
        return row

    assert (simulate(3.0)["status"], simulate(3.0)["margin"]) == ("MISS", -1.0)
    assert (simulate(5.0)["status"], simulate(5.0)["margin"]) == ("PASS", 1.0)
    assert "MISS (by 1 ×)" in run.table([simulate(3.0)])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return load_or_build(TINY, tmp_path_factory.mktemp("accuracy"))


@pytest.mark.integration
def test_gate_comparison_finds_the_same_detections(corpus: Corpus, tmp_path: Path) -> None:
    report = gate.compare(base_settings(tmp_path), corpus)
    assert report["clips"] == len(corpus.clips)
    assert report["detections"]["gate"] == report["detections"]["no_gate"] >= 1
    assert report["clips_with_different_detections"] == []
    assert 0 < report["frames_scored_with_gate"] < report["frames"]


@pytest.mark.integration
def test_identity_compares_every_frame_of_the_corpus_with_stock_openwakeword(
    corpus: Corpus,
) -> None:
    report = identity.compare(corpus)
    assert report["clips"] == len(corpus.clips)
    assert report["frames_compared"] > 100
    assert report["frames_with_different_scores"] == 0, report["first_difference"]
    assert report["identical"]
