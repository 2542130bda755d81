"""What a reload changes (ReloadPlan), and how `satellite reload` waits for it (fast tests)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from gpiozero import LED, GPIOPinInUse
from gpiozero.pins.mock import MockFactory, MockPWMPin

from satellite.audio.capture import Capture
from satellite.config import AudioSettings, ButtonSettings, LedSettings, MqttSettings, Settings
from satellite.errors import ConfigError, MqttError, SatelliteError
from satellite.leds.accessories import Accessories
from satellite.mqtt.link import MqttLink
from satellite.runtime.engines import Engines, engine_key
from satellite.runtime.reload import ReloadPlan, Replacement
from satellite.runtime.reload_record import ReloadRecord, request_reload
from satellite.runtime.satellite import Satellite
from tests.test_audio import FakeMic


def settings(**changes: Any) -> Settings:
    base: dict[str, Any] = {"room_id": "salon", "satellite_id": "sat1"}
    return Settings.model_validate({**base, **changes})


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, []),
        ({"leds": {"brightness": 0.25}}, ["room"]),
        ({"followup": {"enabled": True}}, ["room"]),
        ({"button": {"enabled": False}}, ["room"]),
        ({"state_dir": "/tmp/elsewhere"}, ["room"]),
        ({"wake": {"threshold": 0.7}}, ["machine"]),
        ({"stt": {"trailing_silence_s": 0.8}}, ["machine"]),
        ({"stt": {"phrases": ["stop"]}}, ["engines", "machine"]),
        ({"wake": {"models": ["alexa"]}}, ["engines", "machine"]),
        ({"models": {"dir": "/elsewhere"}}, ["engines", "machine"]),
        ({"audio": {"device": "hw:1"}}, ["audio"]),
        ({"mqtt": {"keepalive_s": 60}}, ["link", "room"]),
        ({"satellite_id": "sat2"}, ["link", "room"]),
        ({"room_id": "kitchen"}, ["link", "room"]),
        ({"arbitration": {"window_ms": 300}}, ["arbitration"]),
        # Other subscriptions: a new link (its offline queue moves over).
        ({"arbitration": {"group": "flat-2"}}, ["link", "room", "arbitration"]),
        ({"arbitration": {"enabled": False}}, ["link", "room", "arbitration"]),
    ],
)
def test_plan_changes_only_what_differs(changes: dict[str, Any], expected: list[str]) -> None:
    assert ReloadPlan.between(settings(), settings(**changes)).changes == expected


def test_record_round_trips_and_is_empty_before_the_first_reload(tmp_path: Path) -> None:
    path = tmp_path / "reload"
    assert ReloadRecord.read(path) == ReloadRecord(0, 0, "")
    ReloadRecord(3, 2, "failed: mqtt.port: bad").write(path)
    assert ReloadRecord.read(path) == ReloadRecord(3, 2, "failed: mqtt.port: bad")
    assert not ReloadRecord.read(path).ok
    assert ReloadRecord(1, 1, "ok: room").ok
    assert [p.name for p in tmp_path.iterdir()] == ["reload"]


def test_a_garbled_record_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "reload"
    path.write_text("not numbers\n")
    with pytest.raises(SatelliteError, match="unreadable reload record"):
        ReloadRecord.read(path)


# A process that answers SIGHUP like the daemon: one reload per signal, recorded when done.
_RELOADER = textwrap.dedent(
    """
    import signal, sys, threading
    from pathlib import Path
    from satellite.runtime.reload_record import ReloadRecord
    path, wanted, done = Path(sys.argv[1]), threading.Event(), []
    signal.signal(signal.SIGHUP, lambda *_: wanted.set())
    ReloadRecord(5, 5, "ok: earlier").write(path)
    print("ready", flush=True)
    while wanted.wait(30):
        wanted.clear()
        ReloadRecord(6, 5, "reloading").write(path)
        ReloadRecord(6, 6, sys.argv[2]).write(path)
    """
)


def started(argv: list[str]) -> subprocess.Popen[str]:
    """A child that printed "ready" (its signal handler is installed)."""
    proc = subprocess.Popen([sys.executable, "-c", *argv], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


@pytest.mark.parametrize("outcome", ["ok: room", "failed: leds.pins: bad"])
def test_request_reload_returns_once_the_reload_completed(tmp_path: Path, outcome: str) -> None:
    with started([_RELOADER, str(tmp_path / "reload"), outcome]) as proc:
        try:
            done = request_reload(proc.pid, tmp_path / "reload", timeout=10.0)
        finally:
            proc.send_signal(signal.SIGTERM)
    assert done == ReloadRecord(6, 6, outcome)


def test_request_reload_gives_up_after_its_timeout(tmp_path: Path) -> None:
    ignore_hup = "import signal, time; signal.signal(1, lambda *_: 0); print('ready', flush=True)"
    with started([ignore_hup + "; time.sleep(30)"]) as sleeper:
        try:
            began = time.monotonic()
            with pytest.raises(SatelliteError, match=r"did not finish reloading in 0\.3 s"):
                request_reload(sleeper.pid, tmp_path / "reload", timeout=0.3)
            assert time.monotonic() - began < 5
        finally:
            sleeper.kill()


def test_request_reload_names_a_process_that_is_gone(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(5)
    with pytest.raises(SatelliteError, match=f"cannot signal the satellite \\(pid {gone.pid}\\)"):
        request_reload(gone.pid, tmp_path / "reload", timeout=1.0)


class QuietWake:
    """Stands in for the wake models in the fast reload tests: hears nothing."""

    def __init__(self) -> None:
        self.threshold, self.patience = 0.5, 1
        self.scores: dict[str, float] = {}

    def process(self, frame: Any) -> None:
        return None

    def reset(self) -> None: ...


def fake_engines(loaded: list[Settings]) -> Callable[[Settings], Engines]:
    def load(settings: Settings) -> Engines:
        loaded.append(settings)
        return Engines(engine_key(settings), cast(Any, QuietWake()), cast(Any, None))

    return load


def test_a_reload_that_cannot_apply_changes_nothing_and_starts_nothing(tmp_path: Path) -> None:
    loaded: list[Settings] = []
    old = settings(state_dir=str(tmp_path), mqtt={"host": "127.0.0.1", "port": 1})
    satellite = Satellite(old, pin_factory=MockFactory(), load=fake_engines(loaded))
    try:
        running = (satellite.link, satellite.accessories, satellite.capture, satellite.machine)
        threads = set(threading.enumerate())
        new = settings(
            state_dir=str(tmp_path),
            wake={"models": ["alexa"]},
            leds={"brightness": 0.25},
            audio={"device": "hw:1"},
            mqtt={"host": "127.0.0.1", "port": 2, "username": "u", "password_file": "/nowhere"},
        )
        with pytest.raises(ConfigError, match="password_file"):
            satellite.reload(new)
        assert len(loaded) == 2  # the new models were loaded, then dropped
        assert satellite.settings is old
        assert (satellite.link, satellite.accessories, satellite.capture, satellite.machine) == (
            running
        )
        assert set(threading.enumerate()) == threads  # no part of the new settings started
    finally:
        satellite.close()


def test_a_failed_reload_closes_the_parts_the_satellite_did_not_take() -> None:
    factory = MockFactory(pin_class=MockPWMPin)
    leds = LedSettings(driver="single", pins=[17])
    accessories = Accessories(
        leds, ButtonSettings(enabled=False), on_press=lambda: None, on_fault=lambda _: None,
        pin_factory=factory,
    )  # fmt: skip
    mic = FakeMic()
    capture = Capture(AudioSettings(device="fake"), pyaudio_module=mic, clock=mic.clock)
    link = MqttLink(MqttSettings(host="127.0.0.1", port=1), client_id="new")
    parts = Replacement(Engines((), cast(Any, None), cast(Any, None)), link, accessories, capture)
    accessories.start()
    capture.open()
    assert accessories.fault is None
    try:
        parts.close(keep=[accessories])  # the satellite took the accessories in, not the rest
        assert mic.closed.wait(5.0), "the new microphone was left open"
        with pytest.raises(MqttError, match="closed"):
            link.start()
        with pytest.raises(GPIOPinInUse):  # the accessories taken in keep their pin
            LED(17, pin_factory=factory)
    finally:
        accessories.close()
        capture.close()
