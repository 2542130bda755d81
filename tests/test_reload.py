"""What a reload changes (ReloadPlan), and how `satellite reload` waits for it (fast tests)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from satellite.config import Settings
from satellite.errors import SatelliteError
from satellite.runtime.reload import ReloadPlan
from satellite.runtime.reload_record import ReloadRecord, request_reload


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
