"""One room answers, on the real daemons, mosquitto and FIFO microphones (issue 15).

Three rooms on one broker hear the same spoken "hey jarvis, <command>" at 0, -6 and -12 dB
(the loudest room rotates) with start offsets of 0-60 ms, over continuous room tone (each
microphone its own), trial after trial: the gateway must see one `wake_detected` and one final
per utterance, from the loudest room in at least 95 % of them. Then: alone on the broker
nobody waits, without a broker the session opens and its final is queued, and a peer that
claims and dies, garbage claims and another group's claims change nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.signals import room_tone
from satellite.runtime.reload_record import request_reload
from tests.support.broker import Broker
from tests.support.fifo_mic import FifoMic
from tests.support.mqtt_probe import Probe, Received
from tests.support.satellite_proc import SatelliteProcess, room_config
from tests.support.speech import RATE, speak
from tests.test_reliability_broker import wait_for_log

pytestmark = pytest.mark.integration

TREE = "v1/voice_assistant"
CLAIMS = f"{TREE}/household/home/wake/claim"
RESULTS = f"{TREE}/household/home/wake/result"
COMMAND = "turn on the kitchen lights"
WINDOW_MS = 200
ROOMS = ("salon", "kitchen", "office")
GAINS_DB = (0.0, -6.0, -12.0)
TRIALS = 30
ALONE_TRIALS = 10
PERIOD_S = 6.0  # a session (its final ~3.5 s after the speech starts), then the refractory 2 s
LEAD_S = 6.0  # room tone before the first trial: longer than the noise floor's 5 s window
MAX_OFFSET_MS = 60
CHUNK = 1280  # FifoMic writes 80 ms chunks
Check = Callable[[Received], bool]


def body(message: Received) -> dict[str, Any]:
    """The JSON object, or {} for the garbage the tests publish."""
    try:
        data = json.loads(message.payload)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def kind(message: Received) -> str:
    """`claim`, `result`, `status`, or the session topic type (`state`, `transcript/final`…)."""
    parts = message.topic.split("/")
    if parts[2] == "household":
        return parts[-1]
    return "status" if parts[-1] == "status" else "/".join(parts[6:])


def room_of(message: Received) -> str:
    return message.topic.split("/")[3]


def is_wake(message: Received) -> bool:
    return kind(message) == "state" and body(message)["state"] == "wake_detected"


def is_final(message: Received) -> bool:
    return kind(message) == "transcript/final"


def by(satellite_id: str, what: str) -> Check:
    """A claim, result or status of `satellite_id`."""
    return lambda m: kind(m) == what and body(m).get("satellite_id") == satellite_id


def online(satellite_id: str) -> Check:
    return lambda m: by(satellite_id, "status")(m) and body(m).get("online") is True


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def spread(values: list[float]) -> str:
    return f"p50 {percentile(values, 50):.0f} ms, p95 {percentile(values, 95):.0f} ms"


# --- three rooms ----------------------------------------------------------------------------


@dataclass
class Room:
    """One room: its FIFO microphone and its satellite, and how its stream lines up."""

    name: str
    mic: FifoMic
    sat: SatelliteProcess
    sync: int = 0  # fed index of the chunk written at monotonic `t0`
    t0: float = 0.0
    first: int = 0  # fed index where the trials' stream starts

    @property
    def satellite_id(self) -> str:
        return f"sat-{self.name}"

    def index_at(self, at: float) -> int:
        """Where in the trials' stream the sample captured at monotonic `at` is.

        Chunks are written every 80 ms from `t0` and the feed never runs dry after `sync`, so
        fed sample i is captured (i - sync) / RATE after the sync chunk's first sample.
        """
        return self.sync + round((at - self.t0) * RATE) - self.first

    def captured_at(self, index: int) -> float:
        """When stream sample `index` was captured: its chunk's write time less the rest of
        the chunk (what the test microphone measures; the plan may slip a little)."""
        fed = self.first + index
        chunk_end = self.sync + ((fed - self.sync) // CHUNK + 1) * CHUNK - 1
        return self.mic.written_at(fed) - (chunk_end - fed) / RATE

    def detecting_chunk_written(self, read_at: float) -> float:
        """The write time of the chunk the daemon read at `read_at` (the last one before)."""
        return max(c.at for c in self.mic.written_chunks if c.at <= read_at + 0.002)


@contextlib.contextmanager
def started(
    tmp_path: Path, broker: Broker, names: tuple[str, ...]
) -> Iterator[tuple[list[Room], Probe]]:
    """A satellite of group "home" per room, each with its FIFO microphone, and a probe on
    the whole tree that was there before any of them."""
    with contextlib.ExitStack() as stack:
        probe = stack.enter_context(Probe(broker.host, broker.port, f"{TREE}/#"))
        rooms = []
        for name in names:
            mic = stack.enter_context(FifoMic(tmp_path / name / "mic"))
            config = room_config(
                tmp_path / name / f"{name}.toml",
                port=broker.port,
                room_id=name,
                satellite_id=f"sat-{name}",
                arbitration={"window_ms": WINDOW_MS},
            )
            sat = SatelliteProcess(
                ["run", "--config", str(config)], env=mic.env, log_path=tmp_path / name / "log"
            )
            rooms.append(Room(name, mic, stack.enter_context(sat)))
        for room in rooms:
            probe.wait_for(online(room.satellite_id), 60)
        yield rooms, probe


@dataclass(frozen=True)
class Trial:
    """One utterance, heard in every room."""

    number: int
    starts: dict[str, int]  # room -> where the speech starts in its stream
    gains_db: dict[str, float]
    begins: float  # monotonic: the trial's share of the timeline
    ends: float

    @property
    def loudest(self) -> str:
        return max(self.gains_db, key=lambda room: self.gains_db[room])


def line_up(rooms: list[Room]) -> None:
    """Feed each microphone one chunk and 4 s of room tone, and note when that chunk was
    written: from then on each microphone's timeline is known to the sample."""
    for i, room in enumerate(rooms):
        tone = room_tone(4.0 + CHUNK / RATE, seed=1000 + i)  # outlasts the planning
        room.sync = room.mic.feed(tone)
        room.first = room.sync + len(tone)
    for room in rooms:
        deadline = time.monotonic() + 5.0
        while not any(c.first == room.sync for c in room.mic.written_chunks):
            assert time.monotonic() < deadline, f"{room.name}: the sync chunk was never written"
            time.sleep(0.01)  # polling interval, bounded by the deadline
        room.t0 = next(c.at for c in room.mic.written_chunks if c.first == room.sync)


def plan_trials(rooms: list[Room], count: int) -> list[Trial]:
    """Speech start per room and trial: a common time plus 0-60 ms, the loudest rotating."""
    rng = np.random.default_rng(15)
    base = max(r.t0 + (r.first - r.sync) / RATE for r in rooms) + LEAD_S
    trials = []
    for t in range(count):
        begins = base + t * PERIOD_S
        offsets = rng.integers(0, MAX_OFFSET_MS + 1, size=len(rooms))
        starts = {
            r.name: r.index_at(begins + off / 1000) for r, off in zip(rooms, offsets, strict=True)
        }
        gains = {r.name: GAINS_DB[(i + t) % len(rooms)] for i, r in enumerate(rooms)}
        trials.append(Trial(t, starts, gains, begins - 0.5, begins + PERIOD_S - 0.5))
    return trials


def streams(rooms: list[Room], trials: list[Trial], clip: np.ndarray) -> dict[str, np.ndarray]:
    """Each room's whole stream: its own room tone, with the clip at its level and start."""
    tail = round(3.0 * RATE)
    out = {}
    for i, room in enumerate(rooms):
        length = max(t.starts[room.name] for t in trials) + len(clip) + tail
        mixed = room_tone(length / RATE, seed=i).astype(np.float64)
        for trial in trials:
            at = trial.starts[room.name]
            mixed[at : at + len(clip)] += clip * 10 ** (trial.gains_db[room.name] / 20)
        out[room.name] = np.clip(np.round(mixed), -32768, 32767).astype(np.int16)
    return out


@dataclass
class Figures:
    """What the trials measured."""

    loudest_won: int = 0
    one_session: int = 0
    exact_finals: int = 0
    other_finals: list[str] = field(default_factory=list)
    claims_per_trial: list[int] = field(default_factory=list)
    decision_ms: list[float] = field(default_factory=list)  # claim -> result, every claimant
    winner_decision_ms: list[float] = field(default_factory=list)
    wake_ms: list[float] = field(default_factory=list)  # detecting chunk -> wake_detected
    rig_ms: list[float] = field(default_factory=list)  # detecting chunk -> read by the daemon
    read_wake_ms: list[float] = field(default_factory=list)  # read -> wake_detected
    hold_ms: list[float] = field(default_factory=list)  # the winner's claim -> wake_detected
    spread_ms: list[float] = field(default_factory=list)  # first to last start, as captured

    def latency(self) -> str:
        """wake -> wake_detected, and its parts."""
        return (
            f"wake -> wake_detected {spread(self.wake_ms)}, max {max(self.wake_ms):.0f} ms; "
            f"of which the detecting chunk written -> read by the daemon {spread(self.rig_ms)}, "
            f"read -> wake_detected {spread(self.read_wake_ms)} (claim -> wake_detected "
            f"{spread(self.hold_ms)})"
        )


def judge(rooms: list[Room], trials: list[Trial], probe: Probe) -> tuple[Figures, list[str]]:
    """Per trial: one session from one room, whose; and the latencies."""
    epoch_offset = time.time() - time.monotonic()
    by_room = {r.name: r for r in rooms}
    figures = Figures()
    problems: list[str] = []
    for trial in trials:
        messages = [m for m in probe.received() if trial.begins <= m.at < trial.ends]
        wakes, finals = [m for m in messages if is_wake(m)], [m for m in messages if is_final(m)]
        claims = {body(m)["claim_id"]: m for m in messages if kind(m) == "claim"}
        results = [m for m in messages if kind(m) == "result"]
        session_rooms = {
            room_of(m) for m in messages if kind(m) not in ("status", "claim", "result")
        }
        figures.claims_per_trial.append(len(claims))
        captured = [by_room[r].captured_at(s) for r, s in trial.starts.items()]
        figures.spread_ms.append((max(captured) - min(captured)) * 1000)
        for result in results:
            claim = claims.get(body(result)["claim_id"])
            if claim is not None and body(result)["outcome"] != "alone":
                figures.decision_ms.append((result.at - claim.at) * 1000)
        if len(wakes) != 1 or len(finals) != 1 or len(session_rooms) != 1:
            claimants = [body(c)["satellite_id"] for c in claims.values()]
            outcomes = [(body(r)["satellite_id"], body(r)["outcome"]) for r in results]
            problems.append(
                f"trial {trial.number}: {len(wakes)} wake_detected, {len(finals)} finals from "
                f"{sorted(session_rooms)}; claims {claimants}, results {outcomes}"
            )
            continue
        figures.one_session += 1
        winner = room_of(wakes[0])
        text = body(finals[0])["text"]
        figures.exact_finals += text == COMMAND
        if text != COMMAND:
            figures.other_finals.append(text)
        if winner == trial.loudest:
            figures.loudest_won += 1
        else:
            problems.append(f"trial {trial.number}: {winner} answered, {trial.loudest} was loudest")
        won = [r for r in results if body(r)["outcome"] in ("won", "alone")]
        if [body(r)["satellite_id"] for r in won] != [f"sat-{winner}"]:
            problems.append(f"trial {trial.number}: results {[body(r) for r in results]}")
            continue
        own_claim = claims[body(won[0])["claim_id"]]
        figures.winner_decision_ms.append((won[0].at - own_claim.at) * 1000)
        read_at = body(own_claim)["detected_at"] / 1000 - epoch_offset
        written = by_room[winner].detecting_chunk_written(read_at)
        figures.wake_ms.append((wakes[0].at - written) * 1000)
        figures.rig_ms.append((read_at - written) * 1000)
        figures.read_wake_ms.append((wakes[0].at - read_at) * 1000)
        figures.hold_ms.append((wakes[0].at - own_claim.at) * 1000)
    return figures, problems


def run_trials(
    rooms: list[Room], probe: Probe, count: int, speech_cache: Path
) -> tuple[Figures, list[str]]:
    """`count` utterances fed to every room as planned; what the broker saw of each."""
    clip = speak(f"hey jarvis, {COMMAND}", cache_dir=speech_cache).astype(np.float64)
    line_up(rooms)
    trials = plan_trials(rooms, count)
    for room, stream in zip(rooms, streams(rooms, trials, clip).values(), strict=True):
        assert room.mic.feed(stream) == room.first
    for room in rooms:
        room.mic.wait_fed(timeout=LEAD_S + count * PERIOD_S + 120)
    last = trials[-1]
    probe.wait_for(lambda m: is_final(m) and m.at >= last.begins, 20)
    figures, problems = judge(rooms, trials, probe)
    for room in rooms:
        assert room.sat.proc.poll() is None, f"{room.name} exited;\n{room.sat.log()}"
        assert "Traceback" not in room.sat.log(), room.sat.log()
    return figures, problems


def test_three_rooms_one_answer_from_the_loudest(
    tmp_path: Path, broker: Broker, speech_cache: Path
) -> None:
    with started(tmp_path, broker, ROOMS) as (rooms, probe):
        figures, problems = run_trials(rooms, probe, TRIALS, speech_cache)
        wins = check_counters(rooms, probe, figures.one_session)

    print(
        f"\nthree rooms, {TRIALS} trials, window {WINDOW_MS} ms: one session in "
        f"{figures.one_session}, the loudest answered in {figures.loudest_won} "
        f"({100 * figures.loudest_won / TRIALS:.0f} %), exact finals {figures.exact_finals} "
        f"(others: {sorted(set(figures.other_finals))}); "
        f"claims per trial {sorted(set(figures.claims_per_trial))}; speech start spread "
        f"{min(figures.spread_ms):.0f}-{max(figures.spread_ms):.0f} ms; wins per room {wins}\n"
        f"decision (claim -> result on the broker): every claimant {spread(figures.decision_ms)}"
        f"; winners {spread(figures.winner_decision_ms)}\n"
        f"with peers: {figures.latency()}"
    )
    assert figures.one_session == TRIALS, "\n".join(problems)
    assert figures.loudest_won >= 0.95 * TRIALS, "\n".join(problems)
    # From the daemon's read: ALSA's null device, which paces the test microphone on its own
    # clock, sometimes hands a chunk over up to 80 ms after the FIFO got it (alone too).
    assert percentile(figures.read_wake_ms, 95) <= WINDOW_MS + 30


def check_counters(rooms: list[Room], probe: Probe, sessions: int) -> dict[str, int]:
    """The statuses count the wins (one per session) and the losses (the other claims)."""

    def latest(room: Room) -> dict[str, Any]:
        statuses = [m for m in probe.received() if by(room.satellite_id, "status")(m)]
        counters: dict[str, Any] = body(statuses[-1]).get("counters", {})
        return counters

    deadline = time.monotonic() + 10.0
    while sum(latest(r).get("arbitration_wins", 0) for r in rooms) < sessions:
        assert time.monotonic() < deadline, [latest(r) for r in rooms]
        time.sleep(0.1)  # polling interval: counters reach the status within a second
    counters = {r.name: latest(r) for r in rooms}
    for room, seen in counters.items():
        assert seen["sessions"] == seen["arbitration_wins"], (room, seen)
        assert seen["wake_detections"] == seen["arbitration_wins"] + seen["arbitration_losses"]
    return {room: seen["arbitration_wins"] for room, seen in counters.items()}


# --- alone, and without a broker -------------------------------------------------------------


def test_alone_on_the_broker_the_wake_is_not_held(
    tmp_path: Path, broker: Broker, speech_cache: Path
) -> None:
    """Measured as with peers, and as benchmarks.run does: from the write of the detecting
    chunk into the test microphone to `wake_detected` received."""
    with started(tmp_path, broker, ("salon",)) as (rooms, probe):
        figures, problems = run_trials(rooms, probe, ALONE_TRIALS, speech_cache)
    outcomes = [body(m)["outcome"] for m in probe.received() if kind(m) == "result"]
    print(f"\nalone on the broker, {ALONE_TRIALS} sessions: {figures.latency()}")
    assert figures.one_session == ALONE_TRIALS, "\n".join(problems)
    assert outcomes == ["alone"] * ALONE_TRIALS
    assert percentile(figures.read_wake_ms, 95) <= 30


def test_without_a_broker_the_session_opens_and_its_final_is_queued(
    tmp_path: Path, fifo_mic: FifoMic, speech_cache: Path
) -> None:
    broker = Broker(tmp_path / "broker")  # a port chosen, nothing listening yet
    config = room_config(tmp_path / "salon.toml", port=broker.port)
    with SatelliteProcess(
        ["run", "--config", str(config)], env=fifo_mic.env, log_path=tmp_path / "log"
    ) as sat:
        wait_for_log(sat, "listening in room salon", 1, 60)
        fifo_mic.feed(speak(f"hey jarvis, {COMMAND}", cache_dir=speech_cache))
        wait_for_log(sat, "final transcript:", 1, 30)
        assert "answered" not in sat.log(), "it waited for peers it cannot reach"
        with contextlib.ExitStack() as stack:
            os.kill(sat.proc.pid, signal.SIGSTOP)  # the probe subscribes before it reconnects
            try:
                stack.enter_context(broker)
                probe = stack.enter_context(Probe(broker.host, broker.port, f"{TREE}/#"))
            finally:
                os.kill(sat.proc.pid, signal.SIGCONT)
            final = probe.wait_for(is_final, 15)
            probe.wait_for(lambda m: kind(m) == "state" and body(m)["state"] == "idle", 5)
            states = [body(m)["state"] for m in probe.received() if kind(m) == "state"]
            assert body(final)["text"] == COMMAND
            assert states == ["wake_detected", "listening", "idle"]
            # A claim is about one moment: none waited in the queue.
            assert not [m for m in probe.received() if kind(m) in ("claim", "result")]
        assert sat.stop() == 0
    assert "Traceback" not in sat.log()


# --- a peer that dies, garbage, another group ------------------------------------------------


def status(satellite_id: str, room: str, **fields: Any) -> bytes:
    return json.dumps({"satellite_id": satellite_id, "room_id": room, **fields}).encode()


def claim(satellite_id: str, group: str, level_db: float, detected_at: int) -> bytes:
    return json.dumps(
        {
            "claim_id": f"claim-{satellite_id}-{detected_at}",
            "satellite_id": satellite_id,
            "room_id": "hall",
            "group": group,
            "wake_word": "hey_jarvis",
            "score": 0.99,
            "level_db": level_db,
            "detected_at": detected_at,
            "timestamp": detected_at,
            "message_id": f"m-{detected_at}",
        }
    ).encode()


GHOST_STATUS = f"{TREE}/room/hall/satellite/ghost/status"
NEIGHBOUR_STATUS = f"{TREE}/room/flat/satellite/neighbour/status"
OTHER_GROUP_CLAIMS = f"{TREE}/household/flat-2/wake/claim"
GARBAGE = [b"\xff\xfe garbage", b'{"claim_id": 1}', claim("ghost", "home", 999.0, 1)]


def test_a_peer_that_dies_garbage_and_another_group_change_nothing(
    tmp_path: Path, broker: Broker, fifo_mic: FifoMic, speech_cache: Path
) -> None:
    config = room_config(tmp_path / "salon.toml", port=broker.port)
    utterance = speak(f"hey jarvis, {COMMAND}", cache_dir=speech_cache)
    gap = room_tone(3.0, seed=9)  # past the end of the session and the refractory time
    with (
        Probe(broker.host, broker.port, f"{TREE}/#") as probe,
        SatelliteProcess(
            ["run", "--config", str(config)], env=fifo_mic.env, log_path=tmp_path / "log"
        ) as sat,
    ):
        probe.wait_for(online("sat1"), 60)
        # A peer online in our group, a neighbour online in theirs; garbage on our claims.
        probe.publish(GHOST_STATUS, status("ghost", "hall", online=True, group="home"), retain=True)
        probe.publish(NEIGHBOUR_STATUS, status("neighbour", "flat", online=True, group="flat-2"))
        for payload in GARBAGE:
            probe.publish(CLAIMS, payload)
        mark = len(probe.received())
        fifo_mic.feed(utterance)
        ours = probe.wait_for(by("sat1", "claim"), 20, start=mark)
        detected = body(ours)["detected_at"]
        # Louder claims: the neighbour's (another group, both ways), then the ghost's, which
        # then never says anything again.
        probe.publish(OTHER_GROUP_CLAIMS, claim("neighbour", "flat-2", 99.0, detected))
        probe.publish(CLAIMS, claim("neighbour", "flat-2", 99.0, detected))
        probe.publish(CLAIMS, claim("ghost", "home", 99.0, detected + 20))
        wake = probe.wait_for(is_wake, 10, start=mark)
        final = probe.wait_for(is_final, 15, start=mark)
        result = probe.wait_for(by("sat1", "result"), 5, start=mark)
        held_ms = (wake.at - ours.at) * 1000
        assert body(final)["text"] == COMMAND
        assert (body(result)["outcome"], body(result)["winner"]) == ("won", "sat1")
        assert "no result from ghost; deciding without them" in sat.log()
        probe.wait_for(lambda m: by("sat1", "status")(m) and counted(m) == len(GARBAGE), 5)

        # The ghost's will; garbage again: alone now, nobody waits.
        probe.publish(GHOST_STATUS, status("ghost", "hall", online=False), retain=True)
        for payload in GARBAGE:
            probe.publish(CLAIMS, payload)
        probe.wait_for(lambda m: by("sat1", "status")(m) and counted(m) == 2 * len(GARBAGE), 5)
        mark = len(probe.received())
        fifo_mic.feed(np.concatenate([gap, utterance]))
        ours = probe.wait_for(by("sat1", "claim"), 20, start=mark)
        wake = probe.wait_for(is_wake, 10, start=mark)
        alone = probe.wait_for(by("sat1", "result"), 5, start=mark)
        probe.wait_for(is_final, 15, start=mark)
        alone_ms = (wake.at - ours.at) * 1000
        assert body(alone)["outcome"] == "alone"
        assert sat.stop() == 0
    print(
        f"\nghost peer (claimed, then silent): wake_detected {held_ms:.0f} ms after our claim "
        f"(window {WINDOW_MS} ms, then the wait for the winner's result); alone again: "
        f"{alone_ms:.0f} ms"
    )
    assert held_ms >= WINDOW_MS
    assert alone_ms < 50
    assert "Traceback" not in sat.log()


def counted(message: Received) -> int | None:
    value: int | None = body(message).get("counters", {}).get("invalid_messages")
    return value


def test_a_reload_moves_the_satellite_to_another_group(
    tmp_path: Path, broker: Broker, fifo_mic: FifoMic, speech_cache: Path
) -> None:
    config = room_config(tmp_path / "salon.toml", port=broker.port)
    runtime = tmp_path / "run"
    runtime.mkdir()
    env = {**fifo_mic.env, "RUNTIME_DIRECTORY": str(runtime)}
    with (
        Probe(broker.host, broker.port, f"{TREE}/#") as probe,
        SatelliteProcess(
            ["run", "--config", str(config)], env=env, log_path=tmp_path / "log"
        ) as sat,
    ):
        probe.wait_for(online("sat1"), 60)
        room_config(config, port=broker.port, arbitration={"group": "flat-2", "window_ms": 300})
        record = request_reload(sat.proc.pid, runtime / "reload", timeout=60.0)
        assert record.ok and "arbitration" in record.outcome, record
        probe.wait_for(lambda m: online("sat1")(m) and body(m).get("group") == "flat-2", 10)
        mark = len(probe.received())
        fifo_mic.feed(speak(f"hey jarvis, {COMMAND}", cache_dir=speech_cache))
        claim = probe.wait_for(by("sat1", "claim"), 20, start=mark)
        result = probe.wait_for(by("sat1", "result"), 5, start=mark)
        probe.wait_for(is_final, 15, start=mark)
        assert claim.topic == result.topic.replace("result", "claim")
        assert claim.topic == f"{TREE}/household/flat-2/wake/claim"
        assert body(result)["outcome"] == "alone"
        assert sat.stop() == 0
    assert "Traceback" not in sat.log()
