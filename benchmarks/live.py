"""Wall-clock figures on the real daemon: FIFO microphone -> `satellite run` -> mosquitto.

Alignment: FifoMic writes 80 ms chunks from its own start and every clip we feed is a whole
number of frames fed while nothing else is pending, so each clip starts on a chunk boundary.
The daemon reads 80 ms (1280 samples) per read from the same stream, so its frames are the
FIFO's chunks: fed sample `first + k * 1280` starts the daemon's k-th frame of the clip, and
`FifoMic.written_at` of it is when that frame became readable (its capture time). The
detecting frame k comes from the same detector run offline on the same room-tone lead + the
clip; the daemon's detector has heard that lead (and was reset, which restores the same
state every time) before each clip too, which the wake score in `wake_detected` lets us
check. The lead (longer than the noise-floor window) also gives the silence gate and the
end-of-voice tracker a real floor instead of the FIFO's idle zeros.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bare import peak_rss_kb, rss_kb
from benchmarks.signals import COMMAND, Samples, last_voiced_sample, room_tone
from satellite.config import MqttSettings
from satellite.core.frames import FRAME_SAMPLES, SAMPLE_RATE, split_frames
from satellite.core.session import SessionMachine
from satellite.mqtt.topics import SatelliteTopic, Topics, TopicType
from tests.support.broker import Broker
from tests.support.fifo_mic import FifoMic
from tests.support.mqtt_probe import Probe, Received
from tests.support.notify_socket import NotifySocket
from tests.support.satellite_proc import ROOT, SatelliteProcess

# The topics of tests/support/satellite_proc.room_config's room, in the default layout.
TOPICS = Topics(room_id="salon", satellite_id="sat1", mqtt=MqttSettings())
SESSION_FILTER = TOPICS.trees[0].every_session
STATUS_FILTER = TOPICS.satellite(SatelliteTopic.STATUS)[0]
LEAD_S = 5.52  # room tone before each clip (69 frames): longer than the noise floor's window
LEAD = room_tone(LEAD_S, seed=7)


@dataclass(frozen=True)
class Detection:
    """The offline detector on the clip: its wake score on every frame, and the first crossing."""

    scores: list[float]
    threshold: float

    @property
    def frame(self) -> int:
        """The first frame at or above the threshold."""
        return next(k for k, score in enumerate(self.scores) if score >= self.threshold)

    def matching(self, live_score: float) -> int:
        """The frame (from the first crossing on) whose offline score is nearest the live one.

        The live detector has heard other audio before the clip, so it may cross a frame
        later than the offline one; the score it reports says which frame that was.
        """
        candidates = range(self.frame, len(self.scores))
        return min(candidates, key=lambda k: abs(self.scores[k] - live_score))


def detecting_frame(machine: SessionMachine, clip: Samples) -> Detection:
    """Wake scores of every frame of `clip` after the room-tone LEAD, as the daemon has them."""
    detector: Any = machine.detector
    detector.reset()
    for frame in split_frames(LEAD):
        detector.process(frame)
    scores = []
    for frame in split_frames(clip):
        detector.process(frame)
        scores.append(max(detector.scores.values()))
    detection = Detection(scores, detector.threshold)
    detection.frame  # noqa: B018 - raises StopIteration when it never fires
    return detection


@dataclass
class LiveResult:
    """Everything measured on one live daemon run."""

    wake_ms: list[float] = field(default_factory=list)
    final_ms: list[float] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    wake_corrected_ms: list[float] = field(default_factory=list)
    exact: int = 0
    sessions: int = 0
    missed: int = 0
    live_scores: list[float] = field(default_factory=list)
    backlog_chunks: list[float] = field(default_factory=list)
    ready_s: list[float] = field(default_factory=list)
    peak_rss_kb: int = 0
    idle_rss_kb: int = 0  # after the last session: what an idle satellite holds
    captured_at: list[float] = field(default_factory=list)
    received_at: list[float] = field(default_factory=list)
    rig_ms: list[float] = field(default_factory=list)
    read_to_received_ms: list[float] = field(default_factory=list)


def topic_type(message: Received) -> str:
    """`state`, `transcript/interim`, `transcript/final` (a TopicType); "" for other topics."""
    where = TOPICS.parse_session(message.topic)
    return "" if where is None else where.topic_type


def body(message: Received) -> dict[str, Any]:
    """The JSON payload."""
    data: dict[str, Any] = json.loads(message.payload)
    return data


def start_daemon(
    config: Path, mic: FifoMic, notify: NotifySocket, log_path: Path
) -> tuple[SatelliteProcess, float]:
    """`satellite run` and the seconds from spawning it to READY=1."""
    env = {**mic.env, "NOTIFY_SOCKET": str(notify.path)}
    started = time.monotonic()
    sat = SatelliteProcess(["run", "--config", str(config)], env=env, log_path=log_path)
    ready = notify.wait_for(lambda n: n.line == "READY=1", 60.0, after=started)
    if ready is None:
        sat.close()
        raise RuntimeError(f"no READY=1 within 60 s:\n{sat.log()}")
    return sat, ready.at - started


def run_live(
    workdir: Path, config: Path, broker: Broker, clip: Samples, *, detection: Detection, n: int
) -> LiveResult:
    """N spoken commands through the daemon; then two more starts for start->READY."""
    result = LiveResult()
    with (
        FifoMic(workdir / "mic") as mic,
        NotifySocket(workdir / "notify.sock") as notify,
        Probe(broker.host, broker.port, SESSION_FILTER) as session,
        Probe(broker.host, broker.port, STATUS_FILTER) as status,
    ):
        sat, ready_s = start_daemon(config, mic, notify, workdir / "sat.log")
        result.ready_s.append(ready_s)
        with sat:
            status.wait_for(lambda m: body(m).get("online") is True, 30.0)
            for _ in range(n):
                _one_command(mic, session, clip, detection, result)
            result.peak_rss_kb = peak_rss_kb(sat.proc.pid)
            result.idle_rss_kb = rss_kb(sat.proc.pid)
            log_text = sat.log()
        for i in range(2):
            again, ready_s = start_daemon(config, mic, notify, workdir / f"sat{i}.log")
            result.ready_s.append(ready_s)
            again.close()
    split_at_log(log_text, result)
    return result


WAKE_LINE = re.compile(r"INFO satellite\.app: wake word .*, ([0-9.]+) ms after its audio was read")


def read_times(log_text: str) -> list[float]:
    """When the daemon read the audio of each wake word (monotonic), from its log lines.

    Each "wake word" line (logged just before publishing) carries wall-clock milliseconds and
    how long after the read it was written; converted with this process's wall-monotonic
    offset (both processes share CLOCK_MONOTONIC).
    """
    offset = time.time() - time.monotonic()
    times = []
    for line in log_text.splitlines():
        found = WAKE_LINE.search(line)
        if found:
            logged = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp() - offset
            times.append(logged - float(found.group(1)) / 1000)
    return times


def split_at_log(log_text: str, result: LiveResult) -> None:
    """Split each wake latency at the daemon's read: test microphone before, satellite after."""
    for read_at, captured, received in zip(
        read_times(log_text), result.captured_at, result.received_at, strict=False
    ):
        result.rig_ms.append((read_at - captured) * 1000)
        result.read_to_received_ms.append((received - read_at) * 1000)


def _one_command(
    mic: FifoMic, session: Probe, clip: Samples, detection: Detection, result: LiveResult
) -> None:
    seen = len(session.received())
    result.backlog_chunks.append(unread_chunks(mic))
    mic.feed(LEAD)  # also lets the refractory period (2 s) after the last session pass
    first = mic.feed(clip)
    try:
        idle = session.wait_for(
            lambda m: topic_type(m) == TopicType.STATE and body(m)["state"] == "idle",
            30.0,
            start=seen,
        )
    except AssertionError:  # no session at all: counted, not fatal
        result.missed += 1
        return
    messages = session.received()[seen : session.received().index(idle) + 1]
    wake = next(m for m in messages if topic_type(m) == TopicType.STATE)
    final = next((m for m in messages if topic_type(m) == TopicType.FINAL), None)
    result.sessions += 1
    if body(wake)["state"] == "wake_detected":
        frame = detection.matching(body(wake)["score"])
        captured = mic.written_at(first + frame * FRAME_SAMPLES)
        result.wake_ms.append((wake.at - captured) * 1000)
        backlog_s = result.backlog_chunks[-1] * mic.chunk_seconds
        result.wake_corrected_ms.append((wake.at - captured - backlog_s) * 1000)
        result.frames.append(frame)
        result.captured_at.append(captured)
        result.received_at.append(wake.at)
        result.live_scores.append(body(wake)["score"])
    if final is not None:
        result.final_ms.append((final.at - voice_end(mic, first, clip)) * 1000)
        result.exact += body(final)["text"] == COMMAND


def unread_chunks(mic: FifoMic) -> float:
    """Audio written to the FIFO but not yet read by the daemon, in 80 ms chunks."""
    # FifoMic's own FIONREAD probe (private, but it is the only one holding the FIFO's fd).
    return mic._unread_bytes() / (mic.chunk_frames * mic.frame_bytes)


def voice_end(mic: FifoMic, first: int, clip: Samples) -> float:
    """When the last voiced sample was spoken: its chunk's write time, less the rest of the chunk.

    A real microphone delivers a chunk when its last sample is captured; the voiced sample
    itself happened (chunk end - sample) / rate earlier.
    """
    last = last_voiced_sample(clip)
    chunk_end = (last // FRAME_SAMPLES + 1) * FRAME_SAMPLES - 1
    return mic.written_at(first + last) - (chunk_end - last) / SAMPLE_RATE


def bare_peak_rss_kb(models_dir: Path, wav: Path, *, lean_sessions: int = 0) -> int:
    """Peak RSS of a process that only loads and runs the bare engines on `wav`; with
    `lean_sessions`, the engines loaded as the satellite loads them, `wav` heard that often."""
    lean = ["--lean", str(lean_sessions)] if lean_sessions else []
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bare", *lean, str(models_dir), str(wav)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return int(json.loads(done.stdout.splitlines()[-1])["vmhwm_kb"])


def simulate_speed(config: Path, wav: Path) -> dict[str, Any]:
    """`satellite simulate`'s own summary (stderr) for `wav`."""
    done = subprocess.run(
        [sys.executable, "-m", "satellite", "-q", "simulate", "--config", str(config), str(wav)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    for line in reversed(done.stderr.splitlines()):
        if line.startswith('{"simulate"'):
            summary: dict[str, Any] = json.loads(line)["simulate"]
            return summary
    raise RuntimeError(f"no simulate summary on stderr:\n{done.stderr}")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank-interpolated percentile (q in 0..100); NaN when empty."""
    if not values:
        return float("nan")
    return float(np.percentile(values, q))


def median(values: list[float]) -> float:
    """The median; NaN when empty."""
    return statistics.median(values) if values else float("nan")
