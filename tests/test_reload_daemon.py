"""Reloads of the real `satellite run`: cheap, lossless, and never a reason for the watchdog.

The daemon runs with a test-owned NOTIFY_SOCKET and RUNTIME_DIRECTORY, the FIFO microphone and
mosquitto; each reload is requested the way the unit's ExecReload does (`request_reload`:
SIGHUP, then wait for the daemon's reload record).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from satellite.runtime.reload_record import ReloadRecord, request_reload
from tests.support.broker import Broker
from tests.support.fifo_mic import FifoMic
from tests.support.mqtt_probe import Probe, Received
from tests.support.notify_socket import NotifySocket
from tests.support.satellite_proc import SatelliteProcess, room_config
from tests.support.speech import RATE, speak

pytestmark = pytest.mark.integration

WATCHDOG_S = 2.0
ROOM = "v1/voice_assistant/room/salon"
STATUS = f"{ROOM}/satellite/sat1/status"
GAP = np.zeros(2 * RATE, dtype=np.int16)  # past the end of a session and the refractory time
COMMANDS = ["turn on the kitchen lights", "turn off the kitchen lights", "stop the music"]
MODELS_LOADED = "loading the wake and speech models"
CONNECTED = "connected to MQTT broker"


def as_json(message: Received) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(message.payload)
    return data


def is_final(message: Received) -> bool:
    return message.topic.endswith("/transcript/final")


def statuses(probe: Probe) -> list[dict[str, Any]]:
    return [as_json(m) for m in probe.received() if m.topic == STATUS]


@dataclass
class Running:
    """The daemon under test and what the test steers it with."""

    sat: SatelliteProcess
    config: Path
    record: Path
    notify: NotifySocket

    def reload(self, **sections: dict[str, Any]) -> ReloadRecord:
        """Rewrite the config with `sections` over the test room's and reload; the record."""
        room_config(self.config, port=self.port, **sections)  # type: ignore[arg-type]
        return request_reload(self.sat.proc.pid, self.record, timeout=60.0)

    @property
    def port(self) -> int:
        """The broker port in the config."""
        for line in self.config.read_text().splitlines():
            if line.startswith("port = "):
                return int(line.split("=")[1])
        raise AssertionError("no port in the config")

    def proc_figures(self) -> tuple[float, int, int]:
        """RSS in MiB, open file descriptors, threads of the daemon now."""
        pid = self.sat.proc.pid
        fields = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        )
        rss = int(fields["VmRSS"].split()[0]) / 1024
        return rss, len(os.listdir(f"/proc/{pid}/fd")), int(fields["Threads"])


@pytest.fixture
def running(tmp_path: Path, broker: Broker, fifo_mic: FifoMic) -> Iterator[Running]:
    config = room_config(tmp_path / "salon.toml", port=broker.port)
    runtime = tmp_path / "run"
    runtime.mkdir()
    with NotifySocket(tmp_path / "notify.sock") as notify:
        env = {
            **fifo_mic.env,
            "NOTIFY_SOCKET": str(notify.path),
            "WATCHDOG_USEC": str(int(WATCHDOG_S * 1e6)),
            "RUNTIME_DIRECTORY": str(runtime),
        }
        with SatelliteProcess(
            ["run", "--config", str(config)], env=env, log_path=tmp_path / "log"
        ) as sat:
            assert notify.wait_for(lambda n: n.line == "READY=1", 30.0), sat.log()
            yield Running(sat, config, runtime / "reload", notify)
            assert "Traceback" not in sat.log()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout} s")
        time.sleep(0.05)  # polling interval, bounded by the deadline


def ping_gaps(notify: NotifySocket, since: float) -> list[float]:
    pings = [n.at for n in notify.lines() if n.line == "WATCHDOG=1" and n.at >= since]
    return [b - a for a, b in itertools.pairwise(pings)]


def test_twenty_reloads_cost_nothing_lasting(
    running: Running, broker: Broker, fifo_mic: FifoMic, speech_cache: Path
) -> None:
    changes: list[dict[str, dict[str, Any]]] = [
        {"leds": {"brightness": 0.25}},
        {"wake": {"threshold": 0.45}},
        {"followup": {"enabled": True}},
        {"arbitration": {"window_ms": 300}},
        {},
    ]
    with Probe(broker.host, broker.port, f"{ROOM}/#") as probe:
        probe.wait_for(lambda m: m.topic == STATUS and as_json(m)["online"], 15)
        first = running.reload(**changes[0])
        assert first.ok, first
        rss0, fds0, threads0 = running.proc_figures()
        began = time.monotonic()
        for n in range(1, 20):
            done = running.reload(**changes[n % len(changes)])
            assert done.ok and done.completed == n + 1, done
        rss, fds, threads = running.proc_figures()
        log = running.sat.log()
        print(
            f"20 reloads in {time.monotonic() - began + 0:.1f} s: RSS {rss0:.1f} -> {rss:.1f} MiB"
            f" ({rss - rss0:+.1f}), fds {fds0} -> {fds}, threads {threads0} -> {threads}; "
            f"model loads {log.count(MODELS_LOADED)}, broker connections {log.count(CONNECTED)}; "
            f"largest watchdog ping gap {max(ping_gaps(running.notify, began)):.2f} s"
        )
        assert rss <= rss0 + 15
        assert (fds, threads) == (fds0, threads0)
        assert log.count(MODELS_LOADED) == 1, "a reload without model changes loaded models"
        assert log.count(CONNECTED) == 1, "a reload reconnected to the broker"
        assert max(ping_gaps(running.notify, began)) < WATCHDOG_S
        seen = statuses(probe)
        assert all(s["online"] for s in seen), "online: false during a reload"
        uptimes = [s["uptime_s"] for s in seen]
        assert uptimes == sorted(uptimes), "uptime_s went back on a reload"

        mark = len(probe.received())
        fifo_mic.feed(speak(f"hey jarvis, {COMMANDS[0]}", cache_dir=speech_cache))
        final = probe.wait_for(is_final, 20, start=mark)
        assert as_json(final)["text"] == COMMANDS[0]


def test_a_model_change_loads_the_models_again_and_is_in_effect_when_reload_returns(
    running: Running, broker: Broker, fifo_mic: FifoMic, speech_cache: Path
) -> None:
    with Probe(broker.host, broker.port, f"{ROOM}/#") as probe:
        probe.wait_for(lambda m: m.topic == STATUS and as_json(m)["online"], 15)
        done = running.reload(stt={"phrases": [COMMANDS[2]]})
        assert done.ok and "engines" in done.outcome, done
        assert running.sat.log().count(MODELS_LOADED) == 2
        # In effect when the reload returned: a command outside the phrases gives no final.
        mark = len(probe.received())
        fifo_mic.feed(speak(f"hey jarvis, {COMMANDS[0]}", cache_dir=speech_cache))
        idle = probe.wait_for(
            lambda m: m.topic.endswith("/state") and as_json(m)["state"] == "idle", 20, start=mark
        )
        assert not [m for m in probe.received()[mark : probe.received().index(idle)] if is_final(m)]
        mark = len(probe.received())
        fifo_mic.feed(
            np.concatenate([GAP, speak(f"hey jarvis, {COMMANDS[2]}", cache_dir=speech_cache)])
        )
        assert as_json(probe.wait_for(is_final, 20, start=mark))["text"] == COMMANDS[2]

        bad = running.reload(wake={"models": ["no_such_model"]})
        assert not bad.ok and "no_such_model" in bad.outcome, bad
        assert "reload: keeping the running configuration" in running.sat.log()
        mark = len(probe.received())
        fifo_mic.feed(
            np.concatenate([GAP, speak(f"hey jarvis, {COMMANDS[2]}", cache_dir=speech_cache)])
        )
        assert as_json(probe.wait_for(is_final, 20, start=mark))["text"] == COMMANDS[2]


def test_a_reload_mid_utterance_lets_it_finish(
    running: Running, broker: Broker, fifo_mic: FifoMic, speech_cache: Path
) -> None:
    with Probe(broker.host, broker.port, f"{ROOM}/#") as probe:
        probe.wait_for(lambda m: m.topic == STATUS and as_json(m)["online"], 15)
        mark = len(probe.received())
        fifo_mic.feed(speak(f"hey jarvis, {COMMANDS[0]}", cache_dir=speech_cache))
        probe.wait_for(
            lambda m: m.topic.endswith("/state") and as_json(m)["state"] == "listening",
            15,
            start=mark,
        )
        # New models and a new machine: they take over only once this utterance is done.
        done = running.reload(wake={"threshold": 0.45}, stt={"phrases": COMMANDS})
        assert done.ok, done
        final = probe.wait_for(is_final, 20, start=mark)
        assert as_json(final)["text"] == COMMANDS[0]
        session = as_json(final)
        idle = probe.wait_for(
            lambda m: m.topic.endswith("/state") and as_json(m)["state"] == "idle", 10, start=mark
        )
        assert probe.received().index(final) < probe.received().index(idle)
        assert session["utt_id"]
        assert "wake threshold 0.45" in running.sat.log()


def test_outage_then_reload_then_broker_back_delivers_every_final_in_order(
    running: Running, broker: Broker, fifo_mic: FifoMic, speech_cache: Path
) -> None:
    spoken = np.concatenate(
        [
            part
            for c in COMMANDS
            for part in (speak(f"hey jarvis, {c}", cache_dir=speech_cache), GAP)
        ]
    )
    with Probe(broker.host, broker.port, f"{ROOM}/#") as probe:
        probe.wait_for(lambda m: m.topic == STATUS and as_json(m)["online"], 15)
    broker.stop()
    fifo_mic.feed(spoken)
    wait_until(
        lambda: running.sat.log().count("final transcript:") == len(COMMANDS), 60, "3 finals"
    )
    # A link setting changes: a new MQTT link, which must take the queue with it.
    moved = running.reload(mqtt={"keepalive_s": 20})
    assert moved.ok and "link" in moved.outcome, moved
    assert running.reload(leds={"brightness": 0.25}).ok  # and a reload that keeps the link
    os.kill(running.sat.proc.pid, signal.SIGSTOP)  # the probe subscribes before it reconnects
    try:
        broker.start()
        after = Probe(broker.host, broker.port, f"{ROOM}/#")
        after.start()
    finally:
        os.kill(running.sat.proc.pid, signal.SIGCONT)
    with after:
        last = after.wait_for(lambda m: is_final(m) and as_json(m)["text"] == COMMANDS[-1], 30)
        finals = [as_json(m)["text"] for m in after.received() if is_final(m)]
        assert finals == COMMANDS
        assert after.received().index(last) >= 0
        assert not [s for s in statuses(after) if not s["online"]]
    log = running.sat.log()
    assert "queued messages moved to the new MQTT link" in log
    print(f"finals spoken during the outage: {len(COMMANDS)}, delivered after it: {len(finals)}")


def test_a_burst_of_sighups_is_coalesced_and_the_pings_go_on(running: Running) -> None:
    room_config(running.config, port=running.port, wake={"threshold": 0.45})
    began = time.monotonic()
    for _ in range(50):
        os.kill(running.sat.proc.pid, signal.SIGHUP)

    def settled() -> bool:
        record = ReloadRecord.read(running.record)
        return record.started > 0 and record.completed == record.started

    wait_until(settled, 60, "the reloads to settle")
    ping = began
    for _ in range(3):  # the pings go on after the reloads too
        found = running.notify.wait_for(lambda n: n.line == "WATCHDOG=1", WATCHDOG_S, after=ping)
        assert found is not None, "no watchdog ping within WatchdogSec"
        ping = found.at
    record = ReloadRecord.read(running.record)
    gaps = ping_gaps(running.notify, began)
    print(
        f"50 SIGHUPs -> {record.completed} reloads; largest watchdog ping gap {max(gaps):.2f} s "
        f"(WatchdogSec={WATCHDOG_S})"
    )
    assert record.ok and record.completed <= 3
    assert max(gaps) < WATCHDOG_S
    assert running.sat.proc.poll() is None


def test_a_reload_to_leds_that_do_not_open_reports_them_and_keeps_listening(
    running: Running, broker: Broker, fifo_mic: FifoMic, speech_cache: Path
) -> None:
    with Probe(broker.host, broker.port, f"{ROOM}/#") as probe:
        probe.wait_for(lambda m: m.topic == STATUS and as_json(m)["online"], 15)
        # No GPIO on this machine (and no mock pin factory): the HAT's LEDs cannot open.
        done = running.reload(leds={"hat": "respeaker-2mic"})
        assert done.ok, done
        faulty = probe.wait_for(
            lambda m: m.topic == STATUS and "cannot open the apa102" in str(as_json(m)), 10
        )
        assert as_json(faulty)["online"] and as_json(faulty)["state"] == "idle"
        mark = len(probe.received())
        fifo_mic.feed(speak(f"hey jarvis, {COMMANDS[2]}", cache_dir=speech_cache))
        assert as_json(probe.wait_for(is_final, 20, start=mark))["text"] == COMMANDS[2]
        assert running.reload(leds={"hat": "none"}).ok
        probe.wait_for(
            lambda m: m.topic == STATUS and "accessory_fault" not in as_json(m), 10, start=mark
        )
        assert running.sat.proc.poll() is None


def test_reloads_that_replace_the_mqtt_link_keep_descriptors_threads_and_status(
    running: Running, broker: Broker
) -> None:
    with Probe(broker.host, broker.port, f"{ROOM}/#") as probe:
        probe.wait_for(lambda m: m.topic == STATUS and as_json(m)["online"], 15)
        assert running.reload(mqtt={"keepalive_s": 20}).ok
        rss0, fds0, threads0 = running.proc_figures()
        for n in range(10):
            done = running.reload(mqtt={"keepalive_s": 30 if n % 2 == 0 else 20})
            assert done.ok and "link" in done.outcome, done
        rss, fds, threads = running.proc_figures()
        print(
            f"10 reloads with a new MQTT link each: RSS {rss0:.1f} -> {rss:.1f} MiB, "
            f"fds {fds0} -> {fds}, threads {threads0} -> {threads}"
        )
        assert (fds, threads) == (fds0, threads0)
        assert rss <= rss0 + 15
        assert all(s["online"] for s in statuses(probe)), "online: false during a reload"
        assert running.sat.log().count(CONNECTED) == 12
