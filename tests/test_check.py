"""`satellite check`: against real mosquitto and the FIFO microphone, and its pieces in-process."""

from __future__ import annotations

import argparse
import io
import json
import math
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from satellite.commands.check import (
    TextReport,
    check_config,
    check_mute_state,
    check_unit,
    default_config,
    run,
)
from satellite.commands.checks import Result, failed, level_bar, measure_level, passed
from satellite.commands.checks.bounded import Child, in_thread
from satellite.config import Settings
from satellite.runtime.mute_store import MuteStore, mute_file
from tests.support.broker import Broker
from tests.support.fifo_mic import FifoMic
from tests.support.full_tmpfs import needs_namespaces, on_a_full_tmpfs
from tests.support.satellite_proc import ROOT, room_config

STATUS = "v1/voice_assistant/room/salon/satellite/sat1/status"
USER = "satellite-salon"
PASSWORD = "correct horse"


def check(
    config: Path, mic: FifoMic, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`satellite check --config CONFIG ARGS` with the FIFO mic and mock GPIO."""
    clean = {k: v for k, v in mic.env.items() if not k.startswith(("SATELLITE_", "MQTT_"))}
    return subprocess.run(
        [sys.executable, "-m", "satellite", "check", "--config", str(config), *args],
        cwd=ROOT,
        env={**clean, "GPIOZERO_PIN_FACTORY": "mock", **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def check_json(config: Path, mic: FifoMic) -> tuple[int, dict[str, dict[str, Any]]]:
    """The exit status and the JSON results by name."""
    done = check(config, mic, "--json")
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, {r["name"]: r for r in json.loads(done.stdout)}


def private_config(tmp_path: Path, port: int, **extra: Any) -> Path:
    config = room_config(tmp_path / "salon.toml", port=port, **extra)
    config.chmod(0o600)
    return config


def assert_only_failure(results: dict[str, dict[str, Any]], name: str, *words: str) -> str:
    """`name` is the one ✗ line, naming `words`, with a fix; returns the fix."""
    failures = [n for n, r in results.items() if r["ok"] is False]
    assert failures == [name], results
    result = results[name]
    for word in words:
        assert word in result["detail"], result
    assert result["fix"], result
    fix: str = result["fix"]
    return fix


def password_broker(tmp_path: Path, acl: str | None = None) -> Broker:
    password_file = tmp_path / "mosquitto.passwd"
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(password_file), USER, PASSWORD],
        check=True,
        capture_output=True,
        timeout=10,
    )
    password_file.chmod(0o600)
    extra = f"allow_anonymous false\npassword_file {password_file}\n"
    if acl is not None:
        acl_file = tmp_path / "acl"
        acl_file.write_text(acl)
        extra += f"acl_file {acl_file}\n"
    return Broker(tmp_path / "broker", extra_config=extra)


def login_config(tmp_path: Path, port: int, password: str) -> Path:
    secret = tmp_path / "salon.password"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    return private_config(tmp_path, port, mqtt={"username": USER, "password_file": str(secret)})


# --- end to end ------------------------------------------------------------------------------


@pytest.mark.integration
def test_good_setup_is_all_ticks_with_level_and_sources(
    tmp_path: Path, broker: Broker, fifo_mic: FifoMic
) -> None:
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(16000 * 20) / 16000)
    fifo_mic.feed((tone * 32767).astype(np.int16))  # -6 dBFS for longer than the check runs
    config = private_config(tmp_path, broker.port, leds={"hat": "respeaker-2mic"})
    env = {"SATELLITE_MQTT__KEEPALIVE_S": "20"}
    done = check(config, fifo_mic, "-v", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    marks = [line[0] for line in lines if line[:1] in "✓✗–"]
    assert set(marks) <= {"✓", "–"} and marks.count("✓") >= 11, done.stdout
    text = done.stdout
    assert "from the environment: mqtt.keepalive_s (SATELLITE_MQTT__KEEPALIVE_S)" in text
    assert f"mqtt.port = {broker.port}  (file)" in text  # -v lists every value and its source
    assert 'mqtt.host = "127.0.0.1"  (file)' in text
    assert "audio.rate = unset  (default)" in text
    assert "read it back" in text and STATUS in text
    assert "peak -6.0 dBFS" in text
    assert lines[-1] == "all checks passed"
    assert "\033[" not in text  # no colour when stdout is not a terminal


@pytest.mark.integration
def test_wrong_password_fails_the_login_line(tmp_path: Path, fifo_mic: FifoMic) -> None:
    with password_broker(tmp_path) as broker:
        config = login_config(tmp_path, broker.port, "wrong horse")
        status, results = check_json(config, fifo_mic)
    assert status == 1
    fix = assert_only_failure(results, "broker login", USER, "refused", "Not authorized")
    assert "mosquitto_passwd" in fix and "salon.password" in fix
    assert "broker round trip" not in results
    assert "wrong horse" not in json.dumps(results)


@pytest.mark.integration
def test_acl_that_forbids_the_status_topic_fails_the_round_trip(
    tmp_path: Path, fifo_mic: FifoMic
) -> None:
    acl = f"user {USER}\ntopic write v1/voice_assistant/room/salon/session/+/state\n"
    with password_broker(tmp_path, acl) as broker:
        config = login_config(tmp_path, broker.port, PASSWORD)
        status, results = check_json(config, fifo_mic)
    assert status == 1
    assert results["broker login"]["ok"] is True
    fix = assert_only_failure(results, "broker round trip", "ACL denied", STATUS)
    assert f"topic readwrite {STATUS}" in fix and USER in fix


@pytest.mark.integration
def test_missing_models_fail_with_the_install_command(
    tmp_path: Path, broker: Broker, fifo_mic: FifoMic
) -> None:
    empty = tmp_path / "models"
    empty.mkdir()
    config = private_config(tmp_path, broker.port, models={"dir": str(empty)})
    status, results = check_json(config, fifo_mic)
    assert status == 1
    failures = {n for n, r in results.items() if r["ok"] is False}
    assert failures == {"models installed", "models load"}
    assert "not installed" in results["models installed"]["detail"]
    for name in failures:
        assert results[name]["fix"] == f"run `satellite models install --dir {empty}`"


@pytest.mark.integration
def test_wrong_device_name_fails_the_microphone_line(
    tmp_path: Path, broker: Broker, fifo_mic: FifoMic
) -> None:
    config = private_config(tmp_path, broker.port, audio={"device": "nosuchmic"})
    status, results = check_json(config, fifo_mic)
    assert status == 1
    fix = assert_only_failure(results, "microphone", "no capture device matches 'nosuchmic'")
    assert "fifomic" in results["microphone"]["detail"]  # what there is instead
    assert "satellite devices" in fix
    assert "audio level" not in results


@pytest.mark.integration
def test_unreachable_broker_says_so(tmp_path: Path, fifo_mic: FifoMic) -> None:
    config = private_config(
        tmp_path, 1, audio={"device": "nosuchmic"}, models={"dir": "/nonexistent"}
    )
    done = check(config, fifo_mic)
    assert done.returncode == 1
    line = next(line for line in done.stdout.splitlines() if "broker reachable" in line)
    assert line.startswith("✗") and "127.0.0.1:1" in line
    assert "broker login" not in done.stdout


@pytest.mark.integration
def test_a_microphone_whose_open_blocks_fails_within_seconds_and_the_rest_still_runs(
    tmp_path: Path, broker: Broker
) -> None:
    mic = FifoMic(tmp_path / "mic")  # never started: its FIFO has no writer, so open(2) blocks
    config = private_config(tmp_path, broker.port)
    started = time.monotonic()
    done = check(config, mic)
    took = time.monotonic() - started
    print(f"check with a hanging microphone: {took:.1f} s")
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    (mic_line,) = [line for line in lines if line.startswith("✗")]
    assert mic_line.split()[1] == "microphone" and "'fifomic' did not open within 5 s" in mic_line
    fix = lines[lines.index(mic_line) + 1]
    assert fix.split()[0] == "fix:" and "replug the microphone" in fix
    later = lines[lines.index(mic_line) + 2 :]
    assert any("models load" in line for line in later)
    assert any("broker round trip" in line for line in later)
    assert re.fullmatch(r"1 of \d+ checks failed", lines[-1]), lines[-1]
    assert took < 45  # models load and the broker take their time; the microphone 5 s of it


# --- in-process ------------------------------------------------------------------------------


def test_invalid_config_is_one_failure_with_its_fix(tmp_path: Path) -> None:
    config = tmp_path / "salon.toml"
    config.write_text('room_id = "salon"\n[mqtt]\nport = "x"\n')
    out = io.StringIO()
    status = run(argparse.Namespace(config=config, json=True, verbose=False), out)
    assert status == 1
    (result,) = json.loads(out.getvalue())
    assert result["name"] == "config" and result["ok"] is False
    assert "mqtt.port" in result["detail"] and str(config) in result["fix"]


def test_config_sources_file_env_alias_and_default(tmp_path: Path) -> None:
    config = tmp_path / "salon.toml"
    config.write_text('room_id = "salon"\n[mqtt]\nport = 1884\nbase_prefix = "file"\n')
    environ = {"MQTT_BASE_PREFIX": "env", "satellite_audio__device": "hw:1"}
    result, settings = check_config(config, environ)
    assert settings is not None and result.ok is True and result.data is not None
    values = result.data["values"]
    assert values["mqtt.port"] == {"value": 1884, "source": "file"}
    assert values["mqtt.base_prefix"]["source"] == "env MQTT_BASE_PREFIX"
    assert values["audio.device"]["source"] == "env satellite_audio__device"
    assert values["mqtt.host"] == {"value": "127.0.0.1", "source": "default"}


def test_unit_state_from_systemctl(tmp_path: Path) -> None:
    systemctl = tmp_path / "systemctl"
    systemctl.write_text('#!/bin/sh\n[ "$2" = satellite@salon.service ] && echo failed\nexit 3\n')
    systemctl.chmod(0o755)
    result = check_unit("salon", run_dir=tmp_path, systemctl=str(systemctl))
    assert result.ok is False and result.detail == "satellite@salon.service is failed"
    assert result.fix is not None and "journalctl -u satellite@salon.service" in result.fix
    no_systemd = check_unit("salon", run_dir=tmp_path / "absent", systemctl=str(systemctl))
    assert no_systemd.ok is None and "not under systemd" in no_systemd.detail


def test_level_of_a_sine_and_of_clipping() -> None:
    sine = (0.5 * 32767 * np.sin(np.linspace(0, 200 * np.pi, 16000))).astype("<i2")
    level = measure_level(sine.tobytes(), rate=16000, channels=1, channel=0)
    assert level.seconds == 1.0 and level.clipped == 0
    assert level.peak_dbfs == pytest.approx(-6.0, abs=0.1)
    assert level.rms_dbfs == pytest.approx(-9.0, abs=0.1)
    stereo = np.stack([np.zeros(100), np.full(100, 32767)], axis=1).astype("<i2")
    right = measure_level(stereo.tobytes(), rate=100, channels=2, channel=1)
    assert right.clipped == 100 and right.peak_dbfs == pytest.approx(0.0, abs=0.01)
    silent = measure_level(stereo.tobytes(), rate=100, channels=2, channel=0)
    assert silent.peak_dbfs == -math.inf
    assert level_bar(-math.inf) == "[" + "-" * 20 + "]"
    assert level_bar(-30.0) == "[" + "#" * 10 + "-" * 10 + "]"


def test_report_colours_only_when_asked() -> None:
    results = [Result("config", True, "fine"), Result("broker login", False, "refused", "fix it")]
    plain, coloured = io.StringIO(), io.StringIO()
    for out, color in ((plain, False), (coloured, True)):
        report = TextReport(out, color=color, verbose=False)
        for result in results:
            report.show(result)
        report.summary(results)
    assert plain.getvalue().splitlines() == [
        "✓ config             fine",
        "✗ broker login       refused",
        "                     fix: fix it",
        "1 of 2 checks failed",
    ]
    assert "\033[32m✓\033[0m" in coloured.getvalue()


def test_default_config_is_the_only_room_file(tmp_path: Path) -> None:
    assert default_config(tmp_path) is None
    (tmp_path / "salon.toml").write_text("")
    assert default_config(tmp_path) == tmp_path / "salon.toml"
    (tmp_path / "kitchen.toml").write_text("")
    assert default_config(tmp_path) is None


def test_mute_state_line_passes_and_leaves_no_probe_file(tmp_path: Path) -> None:
    settings = Settings(room_id="salon", state_dir=tmp_path / "state")
    assert check_mute_state(settings).ok is None  # not there yet: the first mute makes it
    (tmp_path / "state").mkdir()
    result = check_mute_state(settings)
    assert result.ok is True and "none saved (unmuted)" in result.detail
    MuteStore(mute_file(tmp_path / "state", "salon")).save(True)
    result = check_mute_state(settings)
    assert result.ok is True and ": muted;" in result.detail
    assert [p.name for p in (tmp_path / "state").iterdir()] == ["salon.mute.json"]


def test_mute_state_line_fails_on_a_corrupt_file_saying_how_to_clear_it(tmp_path: Path) -> None:
    path = mute_file(tmp_path, "salon")
    path.write_text('{"muted": tr')
    result = check_mute_state(Settings(room_id="salon", state_dir=tmp_path))
    assert result.ok is False and str(path) in result.detail and "started muted" in result.detail
    assert result.fix is not None and f"delete {path}" in result.fix


_CHECK_MUTE_STATE = (
    "import json, sys; from pathlib import Path; "
    "from satellite.commands.check import check_mute_state; "
    "from satellite.config import Settings; "
    "result = check_mute_state(Settings(room_id='salon', state_dir=Path(sys.argv[1]))); "
    "print(json.dumps([result.ok, result.detail, result.fix]))"
)


@needs_namespaces
def test_mute_state_line_fails_on_a_full_disk_with_the_fix(tmp_path: Path) -> None:
    state = tmp_path / "state"
    argv = on_a_full_tmpfs(state)([sys.executable, "-c", _CHECK_MUTE_STATE, str(state)])
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    ok, detail, fix = json.loads(done.stdout)
    assert ok is False and "No space left on device" in detail and str(state) in detail
    assert fix == f"free space on the file system of {state} (`df -h {state}`)"


def test_a_step_on_a_thread_is_abandoned_at_its_deadline() -> None:
    release = threading.Event()
    hung = [failed("broker reachable", "no answer", "fix it")]

    def hangs() -> list[Result]:
        release.wait(30.0)
        return [passed("broker reachable", "too late")]

    started = time.monotonic()
    assert in_thread(hangs, timeout=0.3, on_timeout=lambda: hung) == hung
    assert time.monotonic() - started < 2.0
    release.set()
    quick = [passed("broker reachable", "fine")]
    assert in_thread(lambda: quick, timeout=5.0, on_timeout=lambda: hung) == quick

    def broken() -> list[Result]:
        raise ValueError("a bug in the step")

    with pytest.raises(ValueError, match="a bug in the step"):
        in_thread(broken, timeout=5.0, on_timeout=lambda: hung)


def test_a_child_that_hangs_is_killed_and_its_other_output_passed_on(
    capfd: pytest.CaptureFixture[str],
) -> None:
    code = "import sys, time; print('noise'); print('@p ready', flush=True); time.sleep(60)"
    with Child(code, stdin="", prefix="@p ") as child:
        assert child.line(30.0) == "ready"
        assert child.line(0.3) is None  # sleeping: no answer, and we do not wait longer
    assert child.proc.returncode == -signal.SIGKILL
    assert "noise" in capfd.readouterr().err
