"""`satellite run` under a test-owned NOTIFY_SOCKET: READY, WATCHDOG, STOPPING, RELOADING."""

from __future__ import annotations

import itertools
import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.broker import Broker
from tests.support.fifo_mic import FifoMic
from tests.support.mqtt_probe import Probe
from tests.support.notify_socket import Notification, NotifySocket
from tests.support.satellite_proc import SatelliteProcess, room_config
from tests.support.speech import speak

pytestmark = pytest.mark.integration

WATCHDOG_S = 2.0


def is_line(text: str) -> Callable[[Notification], bool]:
    return lambda n: n.line == text


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    with NotifySocket(tmp_path / "notify.sock") as sock:
        yield sock


def start(
    tmp_path: Path, broker: Broker, mic: FifoMic, notify: NotifySocket, **extra: object
) -> tuple[SatelliteProcess, Path]:
    config = room_config(tmp_path / "salon.toml", port=broker.port, **extra)  # type: ignore[arg-type]
    env = {
        **mic.env,
        "NOTIFY_SOCKET": str(notify.path),
        "WATCHDOG_USEC": str(int(WATCHDOG_S * 1e6)),
    }
    sat = SatelliteProcess(["run", "--config", str(config)], env=env, log_path=tmp_path / "log")
    ready = notify.wait_for(is_line("READY=1"), 30.0)
    assert ready is not None, sat.log()
    return sat, config


def test_ready_comes_after_the_mic_opened_and_pings_follow_the_audio(
    tmp_path: Path, broker: Broker, fifo_mic: FifoMic, notify: NotifySocket
) -> None:
    sat, _ = start(tmp_path, broker, fifo_mic, notify)
    with sat:
        assert "microphone open" in sat.log()
        status = notify.wait_for(lambda n: n.line.startswith("STATUS=room salon"), 10.0)
        assert status is not None
        times = [time.monotonic()]
        for _ in range(4):
            ping = notify.wait_for(is_line("WATCHDOG=1"), WATCHDOG_S, after=times[-1])
            assert ping is not None, "no watchdog ping while audio flows"
            times.append(ping.at)
        gaps = [b - a for a, b in itertools.pairwise(times[1:])]
        print(f"watchdog ping gaps: {[round(g, 2) for g in gaps]} s (WatchdogSec={WATCHDOG_S})")
        assert all(gap < WATCHDOG_S * 0.75 for gap in gaps)

        fifo_mic.pause_writing()  # the mic read now hangs
        paused = time.monotonic()
        late = notify.wait_for(is_line("WATCHDOG=1"), 2 * WATCHDOG_S, after=paused + WATCHDOG_S)
        assert late is None, "pings went on while the microphone read hung"
        fifo_mic.resume_writing()
        resumed = time.monotonic()
        assert notify.wait_for(is_line("WATCHDOG=1"), 2 * WATCHDOG_S, after=resumed)


def test_sigterm_says_stopping_and_exits_0_within_2_s(
    tmp_path: Path, broker: Broker, fifo_mic: FifoMic, notify: NotifySocket
) -> None:
    sat, _ = start(tmp_path, broker, fifo_mic, notify)
    with sat:
        sat.proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        assert notify.wait_for(is_line("STOPPING=1"), 2.0)
        assert sat.proc.wait(timeout=2.0) == 0
        print(f"SIGTERM to exit: {time.monotonic() - sent:.2f} s")
        assert "Traceback" not in sat.log()


def test_sighup_reloads_the_config_and_keeps_it_on_errors(
    tmp_path: Path, broker: Broker, fifo_mic: FifoMic, notify: NotifySocket, speech_cache: Path
) -> None:
    sat, config = start(tmp_path, broker, fifo_mic, notify, wake={"threshold": 0.5})
    with sat, Probe(broker.host, broker.port, "v1/voice_assistant/room/salon/#") as probe:
        probe.wait_for(lambda m: m.topic.endswith("/status") and b'"online":true' in m.payload, 10)
        config.write_text(config.read_text().replace("threshold = 0.5", "threshold = 0.99999"))
        hup = time.monotonic()
        sat.proc.send_signal(signal.SIGHUP)
        assert notify.wait_for(is_line("RELOADING=1"), 5.0, after=hup)
        assert notify.wait_for(is_line("READY=1"), 30.0, after=hup)
        assert "wake threshold 0.99999" in sat.log()

        seen = len(probe.received())
        fifo_mic.feed(speak("hey jarvis, turn on the kitchen lights", cache_dir=speech_cache))
        fifo_mic.wait_fed(15.0)
        with pytest.raises(AssertionError):
            probe.wait_for(lambda m: m.topic.endswith("/state"), 2.0, start=seen)

        config.write_text("room_id = 'salon'\nnot_a_key = 1\n")
        bad = time.monotonic()
        sat.proc.send_signal(signal.SIGHUP)
        assert notify.wait_for(is_line("READY=1"), 10.0, after=bad)
        assert "reload: keeping the running configuration" in sat.log()
        assert "not_a_key: unknown key" in sat.log()
        assert sat.proc.poll() is None
        assert sat.stop() == 0


def test_run_without_notify_socket_works_and_sends_nothing(
    tmp_path: Path, broker: Broker, fifo_mic: FifoMic
) -> None:
    config = room_config(tmp_path / "salon.toml", port=broker.port)
    with (
        Probe(broker.host, broker.port, "v1/voice_assistant/room/salon/satellite/+/status") as st,
        SatelliteProcess(
            ["run", "--config", str(config)], env=fifo_mic.env, log_path=tmp_path / "log"
        ) as sat,
    ):
        st.wait_for(lambda m: b'"online":true' in m.payload, 30)
        assert sat.stop() == 0


def test_without_a_microphone_ready_and_online_come_with_the_fault(
    tmp_path: Path, broker: Broker, fifo_mic: FifoMic, notify: NotifySocket
) -> None:
    """READY=1 and `online: true` mean the daemon runs (config valid, models loaded, the
    microphone open or being retried); STATUS= and the status say when it cannot hear."""
    sat, _ = start(tmp_path, broker, fifo_mic, notify, audio={"device": "no_such_mic"})
    with sat, Probe(broker.host, broker.port, "v1/voice_assistant/room/salon/#") as probe:
        line = notify.wait_for(lambda n: n.line.startswith("STATUS=") and "FAULT" in n.line, 10)
        assert line is not None and "no capture device matches 'no_such_mic'" in line.line
        status = probe.wait_for(lambda m: m.topic.endswith("/status"), 10)
        body = json.loads(status.payload)
        assert (body["online"], body["state"]) == (True, "error"), body
        assert "no capture device matches 'no_such_mic'" in body["fault"]
        assert sat.proc.poll() is None
