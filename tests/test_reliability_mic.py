"""Microphone faults against the real ALSA FIFO device: missing, unplugged, writer gone, busy, hung.

Each test runs `tests.support.mic_runner` (a Capture and nothing else) in a subprocess with the
test's HOME, and prints its figures: time to detect a fault, time to recover once the device is
back (a recovery is declared after ~1 s of audio at real-time pace, so it includes that second).
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.support.broker import Broker
from tests.support.fifo_mic import FifoMic, alsa_env, unprivileged
from tests.support.mic_runner import Line, MicRunner
from tests.support.mqtt_probe import Probe, Received
from tests.support.notify_socket import NotifySocket
from tests.support.satellite_proc import SatelliteProcess, room_config
from tests.support.speech import speak

pytestmark = pytest.mark.integration

# The retry after a fault comes 0.5, 1.5, 3.5 s later: a device back within 1 s is found at
# the latest 3.5 s after the fault, then confirmed by 1 s of audio.
RECOVER_S = 8.0


def is_fault(text: str) -> bool:
    return text.startswith("fault ")


def recovered(line: Line) -> bool:
    return line.text == "recovered"


def flowing(runner: MicRunner, after: float, chunks: int = 5) -> Line:
    """Wait until the runner has read `chunks` more chunks than it had at `after`."""
    first = runner.stats_after(after).stats[0]
    return runner.wait_for(
        lambda x: x.text.startswith("stats") and x.stats[0] >= first + chunks, 5.0, after=after
    )


def test_mic_missing_at_start_is_found_once_configured_without_a_restart(tmp_path: Path) -> None:
    # Nothing in ~/.asoundrc yet: alsa-lib re-reads it because Pa_Terminate drops its cache.
    home = tmp_path / "mic" / "home"
    home.mkdir(parents=True)
    with MicRunner("fifomic", env=alsa_env(home), log_path=tmp_path / "log") as runner:
        fault = runner.wait_for(lambda x: is_fault(x.text), 10.0)
        assert "microphone 'fifomic' unavailable: no capture device matches 'fifomic'" in fault.text
        beat = runner.stats_after(fault.at).stats[1]
        assert runner.stats_after(fault.at + 1.6).stats[1] > beat, "no heartbeat while retrying"
        plugged = time.monotonic()  # before the stimulus: its reaction may beat this thread
        with FifoMic(tmp_path / "mic"):
            back = runner.wait_for(recovered, RECOVER_S, after=plugged)
            flowing(runner, back.at)
            # One report and one log line for the whole outage, however many retries.
            assert [x.text for x in runner.lines() if is_fault(x.text)] == [fault.text]
            assert runner.log().count("retrying every 0.5–30 s") == 1
        print(f"missing at start: recovered {back.at - plugged:.2f} s after the device appeared")


def test_mic_unplugged_is_a_fault_at_once_and_plugged_back_recovers(tmp_path: Path) -> None:
    mic = FifoMic(tmp_path / "mic")
    mic.start()
    try:
        with MicRunner("fifomic", env=mic.env, log_path=tmp_path / "log") as runner:
            flowing(runner, 0.0)
            unplugged = time.monotonic()  # before: the fault line may come before this thread
            mic.unplug()  # writer gone and FIFO removed: stale reads, then ENOENT on reopen
            fault = runner.wait_for(lambda x: is_fault(x.text), 2.0, after=unplugged)
            assert "delivers audio faster than real time" in fault.text
            missing = runner.wait_for(lambda x: "no capture device" in x.text, 3.0, after=fault.at)
            beat = runner.stats_after(missing.at).stats[1]
            mic = FifoMic(tmp_path / "mic")  # the same device comes back on the same path
            plugged = time.monotonic()
            mic.start()
            back = runner.wait_for(recovered, RECOVER_S, after=plugged)
            line = flowing(runner, back.at)
            assert line.stats[1] > beat and line.stats[2] == 2  # generation: one reopen
            print(
                f"unplugged: fault after {fault.at - unplugged:.3f} s; "
                f"recovered {back.at - plugged:.2f} s after it came back"
            )
    finally:
        mic.close()


def test_mic_writer_gone_is_a_fault_and_a_new_writer_recovers(tmp_path: Path) -> None:
    # The FIFO stays: reopening hangs in PortAudio's scan (open(2) of a FIFO nobody writes)
    # until a writer returns, so the heartbeat stalls meanwhile; recovery needs no restart.
    mic = FifoMic(tmp_path / "mic")
    mic.start()
    try:
        with MicRunner("fifomic", env=mic.env, log_path=tmp_path / "log") as runner:
            flowing(runner, 0.0)
            gone = time.monotonic()  # before: the fault line may come before this thread runs
            mic.close()
            fault = runner.wait_for(lambda x: is_fault(x.text), 2.0, after=gone)
            assert "delivers audio faster than real time" in fault.text
            mic = FifoMic(tmp_path / "mic")
            back_at = time.monotonic()
            mic.start()
            back = runner.wait_for(recovered, RECOVER_S, after=back_at)
            flowing(runner, back.at)
            print(
                f"writer gone: fault after {fault.at - gone:.3f} s; "
                f"recovered {back.at - back_at:.2f} s after a writer came back"
            )
    finally:
        mic.close()


def test_mic_busy_at_start_is_a_fault_saying_so_then_recovers(tmp_path: Path) -> None:
    # A real EBUSY from open(2): the PCM's infile is an exclusive tty; the runner drops
    # CAP_SYS_ADMIN, which would bypass the exclusivity.
    with FifoMic(tmp_path / "mic") as mic:
        mic.hold()
        with MicRunner(
            "fifomic", env=mic.env, log_path=tmp_path / "log", wrap=unprivileged
        ) as runner:
            fault = runner.wait_for(lambda x: is_fault(x.text), 10.0)
            assert fault.text == (
                "fault microphone 'fifomic' unavailable: ALSA cannot open 'fifomic' for capture: "
                "Device or resource busy (another program is using it?)"
            )
            released = time.monotonic()
            mic.release()
            back = runner.wait_for(recovered, RECOVER_S, after=released)
            flowing(runner, back.at)
            print(f"busy: recovered {back.at - released:.2f} s after the device was released")


def test_mic_read_that_hangs_stops_the_heartbeat_without_a_fault(tmp_path: Path) -> None:
    with (
        FifoMic(tmp_path / "mic") as mic,
        MicRunner("fifomic", env=mic.env, log_path=tmp_path / "log") as runner,
    ):
        flowing(runner, 0.0)
        paused = time.monotonic()
        mic.pause_writing()  # the read now blocks
        stuck = runner.stats_after(paused + 0.5).stats[1]
        assert runner.stats_after(paused + 2.0).stats[1] == stuck
        mic.resume_writing()
        flowing(runner, time.monotonic())
        assert not any(is_fault(line.text) for line in runner.lines())


def test_daemon_shows_a_mic_fault_keeps_pinging_and_recovers_without_restart(
    tmp_path: Path, broker: Broker, speech_cache: Path
) -> None:
    mic = FifoMic(tmp_path / "mic")
    mic.start()
    config = room_config(tmp_path / "salon.toml", port=broker.port, leds={"hat": "respeaker-2mic"})
    env = {
        **mic.env,
        "GPIOZERO_PIN_FACTORY": "mock",
        "NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
        "WATCHDOG_USEC": "2000000",
    }
    status_topic = "v1/voice_assistant/room/salon/satellite/sat1/status"

    def status(**expected: object) -> Callable[[Received], bool]:
        def check(m: Received) -> bool:
            body = json.loads(m.payload) if m.topic == status_topic else {}
            return bool(body) and all(body.get(k) == v for k, v in expected.items())

        return check

    with (
        NotifySocket(tmp_path / "notify.sock") as notify,
        Probe(broker.host, broker.port, "v1/voice_assistant/room/salon/#") as probe,
        SatelliteProcess(
            ["run", "--config", str(config)], env=env, log_path=tmp_path / "log"
        ) as sat,
    ):
        probe.wait_for(status(online=True, state="idle"), 30)
        mark = len(probe.received())
        mic.unplug()
        unplugged = time.monotonic()
        faulted = probe.wait_for(status(state="error", led="error"), 10.0, start=mark)
        print(f"mic unplugged -> status error: {faulted.at - unplugged:.2f} s")
        assert json.loads(faulted.payload)["fault"]
        probe.wait_for(
            lambda m: m.topic.endswith("/state") and json.loads(m.payload).get("state") == "error",
            5.0,
            start=mark,
        )
        assert "'fifomic'" in sat.log()
        since = time.monotonic()
        assert notify.wait_for(lambda n: n.line == "WATCHDOG=1", 3.0, after=since), (
            "a mic that is being retried is not hung: pings must go on"
        )
        mark = len(probe.received())
        with FifoMic(tmp_path / "mic") as back:
            plugged = time.monotonic()
            recovered = probe.wait_for(status(state="idle", led="idle"), 40.0, start=mark)
            print(f"mic plugged back -> status idle: {recovered.at - plugged:.2f} s")
            assert sat.proc.poll() is None
            seen = len(probe.received())
            back.feed(speak("hey jarvis, turn on the kitchen lights", cache_dir=speech_cache))
            final = probe.wait_for(
                lambda m: m.topic.endswith("/transcript/final"), 15.0, start=seen
            )
            assert json.loads(final.payload)["text"] == "turn on the kitchen lights"
            assert sat.stop() == 0
    mic.close()


def stall(pid: int, seconds: float) -> None:
    """Stop process `pid` for `seconds` (SIGSTOP, then SIGCONT), as a long swap or GC pause."""
    os.kill(pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 5.0
        while Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "T":
            assert time.monotonic() < deadline, "the process did not stop"
            time.sleep(0.01)
        threading.Event().wait(seconds)  # the stall itself, not a synchronisation
    finally:
        os.kill(pid, signal.SIGCONT)


def test_daemon_stopped_for_5_s_takes_the_backlog_and_the_utterance_without_a_fault(
    tmp_path: Path, broker: Broker, speech_cache: Path
) -> None:
    # The device records on while the process is stopped, as a sound server or a deep
    # buffer does: the FIFO keeps up to 8 s, read at once on SIGCONT. Nothing is written
    # before the satellite reads (a device has no backlog when it is opened).
    mic = FifoMic(tmp_path / "mic", backlog_chunks=100)
    mic.pause_writing()
    config = room_config(tmp_path / "salon.toml", port=broker.port)
    env = {**mic.env, "GPIOZERO_PIN_FACTORY": "mock"}
    speech = speak("hey jarvis, turn on the kitchen lights", cache_dir=speech_cache)

    def final_text(start: int) -> str:
        final = probe.wait_for(lambda m: m.topic.endswith("/transcript/final"), 30.0, start=start)
        text: str = json.loads(final.payload)["text"]
        return text

    def is_state(state: str) -> Callable[[Received], bool]:
        return lambda m: m.topic.endswith("state") and json.loads(m.payload).get("state") == state

    with (
        mic,
        Probe(broker.host, broker.port, "v1/voice_assistant/room/salon/#") as probe,
        SatelliteProcess(
            ["run", "--config", str(config)], env=env, log_path=tmp_path / "log"
        ) as sat,
    ):
        probe.wait_for(lambda m: m.topic.endswith("/status") and b'"idle"' in m.payload, 30)
        mic.resume_writing()  # the stream is open by now: it was opened before connecting
        mic.feed(np.zeros(16000, np.int16))  # a second of reading at pace before the stall
        mic.wait_fed(10.0)
        stall(sat.proc.pid, 5.0)  # idle, then a command
        mark = len(probe.received())
        mic.feed(speech)
        assert final_text(mark) == "turn on the kitchen lights"
        mark = len(probe.received())
        mic.feed(np.zeros(40000, np.int16))  # past the 2 s in which no new wake word counts
        mic.feed(speech)
        probe.wait_for(is_state("wake_detected"), 15.0, start=mark)
        stall(sat.proc.pid, 5.0)  # in the middle of the command
        resumed = time.monotonic()
        assert final_text(mark) == "turn on the kitchen lights"
        print(f"final {time.monotonic() - resumed:.2f} s after SIGCONT")
        assert not [m for m in probe.received() if is_state("error")(m)]
        assert "faster than real time" not in sat.log()
        stalls = re.findall(r"no audio read for (\d+\.\d) s", sat.log())
        assert len(stalls) == 2 and all(float(s) >= 5.0 for s in stalls), stalls  # once each
        assert sat.stop() == 0
