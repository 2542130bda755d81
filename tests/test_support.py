"""The test support code itself, against the real mosquitto, ALSA file PCM and espeak-ng."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from tests.support.amqtt_broker import Probe311
from tests.support.broker import Broker, free_port, port_accepts
from tests.support.fifo_mic import FifoMic
from tests.support.mqtt_probe import Probe, Received
from tests.support.speech import load_wav, save_wav, speak

# Runs with HOME=<the mic's home>: ALSA reads ~/.asoundrc once, at PortAudio's start.
READER = """
import json, sys, time
import pyaudio
name, rate, channels, reads, out = sys.argv[1:6]
rate, channels, reads = int(rate), int(channels), int(reads)
frames = rate * 80 // 1000
pa = pyaudio.PyAudio()
names = [pa.get_device_info_by_index(i)["name"] for i in range(pa.get_device_count())]
stream = pa.open(rate=rate, channels=channels, format=pyaudio.paInt16, input=True,
                 input_device_index=names.index(name), frames_per_buffer=frames)
print("open", flush=True)
times, chunks = [], []
for _ in range(reads):
    chunks.append(stream.read(frames, exception_on_overflow=False))
    times.append(time.monotonic())
stream.stop_stream()
stream.close()
pa.terminate()
with open(out, "wb") as f:
    f.write(b"".join(chunks))
print(json.dumps({"names": names, "times": times}), flush=True)
"""


@dataclass(frozen=True)
class Captured:
    """What the reader subprocess got: interleaved samples and the time each read returned."""

    samples: npt.NDArray[np.int16]
    times: list[float]
    names: list[str]


def capture(mic: FifoMic, out: Path, reads: int, after_open: Callable[[], None]) -> Captured:
    """Read `reads` 80 ms chunks from `mic` in a subprocess; call `after_open` once it opened."""
    args = [mic.name, str(mic.rate), str(mic.channels), str(reads), str(out)]
    command = [sys.executable, "-c", READER, *args]
    with subprocess.Popen(
        command, env=mic.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
    ) as proc:
        try:
            _expect_line(proc, b"open\n", timeout=10)
            after_open()
            stdout, stderr = proc.communicate(timeout=reads * 0.08 + 10)
        finally:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr.decode(errors="replace")[-2000:]
    result = json.loads(stdout)
    samples = np.frombuffer(out.read_bytes(), dtype="<i2").astype(np.int16)
    return Captured(samples, result["times"], result["names"])


def _expect_line(proc: subprocess.Popen[bytes], line: bytes, timeout: float) -> None:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"reader printed nothing within {timeout} s"
    assert proc.stdout.readline() == line


def noise(n: int, seed: int = 1) -> npt.NDArray[np.int16]:
    """`n` non-zero random samples, so fed audio cannot be mistaken for silence."""
    return np.random.default_rng(seed).integers(1, 30000, size=n, dtype=np.int16)


def feed(mic: FifoMic, samples: npt.NDArray[np.int16]) -> None:
    """Feed `samples`, ignoring where they start (for after_open callbacks)."""
    mic.feed(samples)


def find(fed: npt.NDArray[np.int16], got: npt.NDArray[np.int16]) -> int:
    """Where the non-zero `fed` block starts in `got` (AssertionError unless byte-exact)."""
    nonzero = np.flatnonzero(got)
    assert len(nonzero) == len(fed), f"{len(nonzero)} non-zero samples back, fed {len(fed)}"
    start = int(nonzero[0])
    assert np.array_equal(got[start : start + len(fed)], fed)
    return start


# --- broker -------------------------------------------------------------------------------


@pytest.mark.integration
def test_broker_listens_on_loopback_and_logs(broker: Broker) -> None:
    assert broker.host == "127.0.0.1"
    assert port_accepts(broker.host, broker.port)
    assert "mosquitto version" in broker.log_path.read_text()


@pytest.mark.integration
def test_broker_restarts_on_the_same_port(tmp_path: Path) -> None:
    with Broker(tmp_path) as broker:
        port = broker.port
        broker.stop()
        broker.stop()
        assert not port_accepts(broker.host, port)
        broker.start()
        assert broker.port == port
        assert port_accepts(broker.host, port)


@pytest.mark.integration
def test_broker_with_a_chosen_port_is_down_until_started(tmp_path: Path) -> None:
    port = free_port()
    broker = Broker(tmp_path, port=port)
    assert not broker.running
    assert not port_accepts("127.0.0.1", port)
    with broker:
        assert port_accepts("127.0.0.1", port)


@pytest.mark.integration
def test_broker_reports_a_bad_config(tmp_path: Path) -> None:
    with (
        pytest.raises(AssertionError, match="exited at start"),
        Broker(tmp_path, extra_config="no_such_option 1"),
    ):
        pass


# --- probe --------------------------------------------------------------------------------


@pytest.mark.integration
def test_probe_records_qos_and_retain_as_published(broker: Broker) -> None:
    with (
        Probe(broker.host, broker.port, "t/#") as probe,
        Probe(broker.host, broker.port, "unused") as publisher,
    ):
        publisher.publish("t/0", b"zero", qos=0)
        publisher.publish("t/1", b"one", qos=1, retain=True)
        publisher.publish("t/2", b"two", qos=2)
        publisher.publish("other", b"ignored", qos=1)
        got = probe.wait_count(3, timeout=5)
    assert [(m.topic, m.payload, m.qos, m.retain) for m in got] == [
        ("t/0", b"zero", 0, False),
        ("t/1", b"one", 1, True),
        ("t/2", b"two", 1, False),
    ]


@pytest.mark.integration
def test_probe_gets_retained_messages_on_subscribe(broker: Broker) -> None:
    with Probe(broker.host, broker.port, "unused") as publisher:
        publisher.publish("state", b"online", retain=True)
    with Probe(broker.host, broker.port, "state") as probe:
        message = probe.wait_for(lambda m: m.payload == b"online", timeout=5)
    assert message.retain


@pytest.mark.integration
def test_probe_wait_for_starts_at_an_index(broker: Broker) -> None:
    with Probe(broker.host, broker.port, "#") as probe:
        probe.publish("a", b"1")
        probe.publish("a", b"2")
        second = probe.wait_for(lambda m: m.topic == "a", timeout=5, start=1)
    assert second.payload == b"2"


@pytest.mark.integration
def test_probe_resubscribes_after_a_broker_restart(broker: Broker) -> None:
    with Probe(broker.host, broker.port, "state") as probe:
        broker.stop()
        broker.start()
        with Probe(broker.host, broker.port, "unused") as publisher:
            publisher.publish("state", b"back", retain=True)
        probe.wait_for(lambda m: m.payload == b"back", timeout=10)


@pytest.mark.integration
def test_probe_timeout_dumps_what_arrived(broker: Broker) -> None:
    with Probe(broker.host, broker.port, "#") as probe:
        probe.publish("seen", b"payload")
        probe.wait_count(1, timeout=5)
        with pytest.raises(AssertionError, match=r"(?s)received 1.*seen.*payload"):
            probe.wait_for(lambda m: m.topic == "never", timeout=0.2)


@pytest.mark.integration
@pytest.mark.parametrize("probe_class", [Probe, Probe311], ids=["mqtt5", "mqtt311"])
def test_entering_a_started_probe_keeps_its_one_subscription(
    broker: Broker, probe_class: type[Probe]
) -> None:
    """start(), then `with`: one connection and one subscription, so nothing published
    meanwhile is missed and nothing retained comes twice (a second connect would do both)."""
    with Probe(broker.host, broker.port, "unused") as publisher:
        publisher.publish("kept", b"retained", retain=True)
        probe = probe_class(broker.host, broker.port, "#")
        probe.start()
        probe.wait_for(lambda m: m.payload == b"retained", timeout=5)
        with probe:
            publisher.publish("live", b"live")
            probe.wait_for(lambda m: m.payload == b"live", timeout=5)
    assert [m.payload for m in probe.received()] == [b"retained", b"live"]


@pytest.mark.integration
def test_probe_start_fails_when_broker_is_down(tmp_path: Path) -> None:
    broker = Broker(tmp_path)
    with pytest.raises(ConnectionRefusedError), Probe(broker.host, broker.port):
        pass


def test_received_is_a_value() -> None:
    assert Received("t", b"p", 1, False, 1.0) == Received("t", b"p", 1, False, 1.0)


# --- fifo mic -----------------------------------------------------------------------------


@pytest.mark.integration
def test_fifo_mic_is_listed_paced_and_byte_exact(fifo_mic: FifoMic, tmp_path: Path) -> None:
    fed = noise(8000)
    first: list[int] = []
    got = capture(fifo_mic, tmp_path / "out.raw", 30, lambda: first.append(fifo_mic.feed(fed)))
    fifo_mic.wait_fed(timeout=5)
    assert got.names == ["fifomic"]
    start = find(fed, got.samples)
    # The first reads may drain a backlog (at most 4 chunks); after that, one chunk per 80 ms.
    steady = got.times[-1] - got.times[5]
    assert 0.8 * 24 * 0.08 <= steady <= 2 * 24 * 0.08
    read_at = got.times[start // fifo_mic.chunk_frames]
    assert 0 <= read_at - fifo_mic.written_at(first[0]) < 0.4


@pytest.mark.integration
def test_fifo_mic_plays_its_idle_audio_looped_when_nothing_is_fed(tmp_path: Path) -> None:
    idle = noise(3000, seed=2)  # not a whole chunk: the loop runs across chunk boundaries
    with FifoMic(tmp_path, idle=idle) as mic:
        got = capture(mic, tmp_path / "out.raw", 10, lambda: None)
    assert np.count_nonzero(got.samples) == len(got.samples)  # no digital silence
    head = got.samples[:32]  # where the loop was when the reader opened
    starts = [i for i in range(len(idle)) if np.array_equal(np.roll(idle, -i)[:32], head)]
    assert len(starts) == 1
    looped = np.resize(np.roll(idle, -starts[0]), len(got.samples))
    assert np.array_equal(got.samples, looped)


@pytest.mark.integration
def test_fifo_mic_serves_48k_stereo(tmp_path: Path) -> None:
    fed = noise(2 * 24000).reshape(-1, 2)
    with FifoMic(tmp_path, rate=48000, channels=2) as mic:
        got = capture(mic, tmp_path / "out.raw", 20, lambda: feed(mic, fed))
    find(fed.reshape(-1), got.samples)


@pytest.mark.integration
def test_fifo_mic_pause_makes_reads_hang(fifo_mic: FifoMic, tmp_path: Path) -> None:
    def pause_for_a_while() -> None:
        fifo_mic.pause_writing()
        time.sleep(0.6)  # the stimulus: a mic that stops delivering for 0.6 s
        fifo_mic.resume_writing()

    got = capture(fifo_mic, tmp_path / "out.raw", 15, pause_for_a_while)
    assert max(np.diff(got.times)) >= 0.45


@pytest.mark.integration
def test_fifo_mic_close_gives_unpaced_stale_reads(fifo_mic: FifoMic, tmp_path: Path) -> None:
    got = capture(fifo_mic, tmp_path / "out.raw", 30, fifo_mic.close)
    # EOF is not an error for alsa-lib's file plugin: reads return at once, forever.
    assert got.times[-1] - got.times[0] < 1.0


@pytest.mark.integration
def test_fifo_mic_written_at_needs_a_written_frame(fifo_mic: FifoMic) -> None:
    with pytest.raises(AssertionError, match="not written yet"):
        fifo_mic.written_at(0)


@pytest.mark.integration
def test_fifo_mic_feed_rejects_partial_frames(tmp_path: Path) -> None:
    mic = FifoMic(tmp_path, channels=2)
    with pytest.raises(ValueError, match="whole 2-channel frames"):
        mic.feed(np.zeros(3, np.int16))


# --- speech -------------------------------------------------------------------------------


@pytest.mark.integration
def test_speak_pads_with_silence_and_caches(speech_cache: Path) -> None:
    samples = speak("hello world", cache_dir=speech_cache)
    cached = sorted(speech_cache.iterdir())
    again = speak("hello world", cache_dir=speech_cache)
    assert samples.dtype == np.int16
    assert 1.5 < len(samples) / 16000 < 4
    assert np.abs(samples[:7000]).max() <= 2 and np.abs(samples[-7000:]).max() <= 2
    assert np.abs(samples).max() > 1000
    assert np.array_equal(samples, again)
    assert sorted(speech_cache.iterdir()) == cached


def test_wav_round_trip_mono_and_stereo(tmp_path: Path) -> None:
    mono, stereo = noise(100), noise(200).reshape(-1, 2)
    save_wav(tmp_path / "m.wav", mono)
    save_wav(tmp_path / "s.wav", stereo, rate=48000)
    got_mono, mono_rate = load_wav(tmp_path / "m.wav")
    got_stereo, stereo_rate = load_wav(tmp_path / "s.wav")
    assert (mono_rate, stereo_rate) == (16000, 48000)
    assert np.array_equal(got_mono, mono) and np.array_equal(got_stereo, stereo)
