"""The mute state fails closed: atomic fsynced writes, reported failures, unreadable means muted."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from satellite.runtime.mute_store import MuteStore, mute_file
from tests.support.broker import Broker
from tests.support.fifo_mic import FifoMic
from tests.support.full_tmpfs import needs_namespaces, on_a_full_tmpfs, seen_by
from tests.support.mqtt_probe import Probe, Received
from tests.support.satellite_proc import ROOT, SatelliteProcess, room_config


def files_in(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def failing(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def test_save_then_load_round_trips_and_leaves_only_the_file(tmp_path: Path) -> None:
    path = mute_file(tmp_path / "state", "salon")
    store = MuteStore(path)
    store.save(True)
    assert json.loads(path.read_text()) == {"muted": True}
    assert MuteStore(path).load() is True
    store.save(False)
    assert MuteStore(path).load() is False
    assert files_in(path.parent) == ["salon.mute.json"]
    assert store.problem is None


def test_save_fsyncs_the_file_before_the_rename_and_the_directory_after(tmp_path: Path) -> None:
    path = tmp_path / "salon.mute.json"
    synced: list[tuple[str, bool]] = []

    def fsync(fd: int) -> None:
        os.fsync(fd)
        kind = "dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file"
        synced.append((kind, path.exists()))

    MuteStore(path, fsync=fsync).save(True)
    assert synced == [("file", False), ("dir", True)]


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_a_full_disk_keeps_the_old_state_leaves_no_temp_file_and_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    path = tmp_path / "salon.mute.json"
    MuteStore(path).save(False)
    full = True

    def write(fd: int, data: bytes) -> int:
        if full and where == "write":
            raise failing(errno.ENOSPC)
        return os.write(fd, data)

    def fsync(fd: int) -> None:
        if full and where == "fsync":
            raise failing(errno.ENOSPC)
        os.fsync(fd)

    store = MuteStore(path, write=write, fsync=fsync)
    with caplog.at_level(logging.ERROR, logger="satellite.runtime.mute_store"):
        store.save(True)
    assert json.loads(path.read_text()) == {"muted": False}  # the old state, whole
    assert files_in(tmp_path) == ["salon.mute.json"]
    assert store.problem is not None and "No space left on device" in store.problem
    assert str(path) in store.problem
    (record,) = caplog.records
    assert "free space on the file system of" in record.getMessage()
    full = False
    store.save(True)
    assert store.problem is None and MuteStore(path).load() is True


def test_a_short_write_is_completed(tmp_path: Path) -> None:
    path = tmp_path / "salon.mute.json"
    MuteStore(path, write=lambda fd, data: os.write(fd, data[:3])).save(True)
    assert json.loads(path.read_text()) == {"muted": True}


def test_a_missing_file_is_unmuted_without_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = MuteStore(tmp_path / "nothing" / "salon.mute.json")
    with caplog.at_level(logging.DEBUG, logger="satellite.runtime.mute_store"):
        assert store.load() is False
    assert caplog.records == [] and store.problem is None


@pytest.mark.parametrize(
    "content",
    [b'{"mut', b"", b'{"muted": "no"}', b"[true]", b'{"muted": 1}', b"\xff\xfe"],
    ids=["truncated", "empty", "string", "list", "number", "not-utf8"],
)
def test_a_corrupt_file_starts_muted_with_a_warning_saying_how_to_clear_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    path = tmp_path / "salon.mute.json"
    path.write_bytes(content)
    store = MuteStore(path)
    with caplog.at_level(logging.WARNING, logger="satellite.runtime.mute_store"):
        assert store.load() is True
    (record,) = caplog.records
    message = record.getMessage()
    assert record.levelno == logging.WARNING and str(path) in message
    assert "starting MUTED" in message and "unmute by command or the button" in message
    assert store.problem is not None and "started muted" in store.problem
    store.save(False)  # unmuting rewrites it
    assert store.problem is None and MuteStore(path).load() is False


def test_a_directory_or_fifo_in_place_of_the_file_starts_muted_without_hanging(
    tmp_path: Path,
) -> None:
    path = tmp_path / "salon.mute.json"
    path.mkdir()
    store = MuteStore(path)
    assert store.load() is True
    assert store.problem is not None and "not a regular file" in store.problem
    store.save(False)  # cannot replace a directory: still reported, no temp file left
    assert store.problem is not None and "cannot save" in store.problem
    assert files_in(tmp_path) == ["salon.mute.json"]
    path.rmdir()
    os.mkfifo(path)  # opening a FIFO for reading would block without O_NONBLOCK
    assert MuteStore(path).load() is True


_LOAD = (
    "import sys; from pathlib import Path; from satellite.runtime.mute_store import MuteStore; "
    "store = MuteStore(Path(sys.argv[1])); print(store.load(), store.problem)"
)


def test_permission_denied_starts_muted(tmp_path: Path) -> None:
    # Root reads a mode-000 file anyway: then the reader runs without the capabilities that
    # bypass file permissions, so the denial is the kernel's in both cases.
    path = tmp_path / "salon.mute.json"
    MuteStore(path).save(False)
    path.chmod(0)
    argv = [sys.executable, "-c", _LOAD, str(path)]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot drop CAP_DAC_OVERRIDE")
        argv = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *argv]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("True mute state") and "Permission denied" in done.stdout
    assert "starting MUTED" in done.stderr


# --- a real full disk: a 16 KiB tmpfs in a private mount namespace (no root needed) -----------

_SAVE = (
    "import json, os, sys; from pathlib import Path; "
    "from satellite.runtime.mute_store import MuteStore; "
    "store = MuteStore(Path(sys.argv[1]) / 'salon.mute.json'); store.save(True); "
    "print(json.dumps([store.problem, sorted(os.listdir(sys.argv[1])), "
    "(Path(sys.argv[1]) / 'salon.mute.json').read_text()]))"
)


@needs_namespaces
def test_a_really_full_disk_keeps_the_old_state_and_leaves_no_temp_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    argv = on_a_full_tmpfs(state)([sys.executable, "-c", _SAVE, str(state)])
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    problem, files, content = json.loads(done.stdout)
    assert "No space left on device" in problem
    assert files == ["fill", "salon.mute.json"]
    assert json.loads(content) == {"muted": False}


# --- the daemon: status and the start after a corrupt file ------------------------------------

STATUS = "v1/voice_assistant/room/salon/satellite/sat1/status"
COMMAND = "v1/voice_assistant/room/salon/satellite/sat1/command"


def is_status(**expected: object) -> Callable[[Received], bool]:
    """A status message whose fields equal `expected` (None: the field is absent)."""

    def check(message: Received) -> bool:
        if message.topic != STATUS:
            return False
        status = json.loads(message.payload)
        return all(status.get(key) == value for key, value in expected.items())

    return check


@pytest.mark.integration
def test_daemon_starts_muted_on_a_truncated_mute_file_and_unmute_rewrites_it(
    tmp_path: Path, broker: Broker, fifo_mic: FifoMic
) -> None:
    config = room_config(tmp_path / "salon.toml", port=broker.port)
    path = mute_file(tmp_path / "state", "salon")
    path.parent.mkdir()
    path.write_text('{"mu')  # a power cut in the middle of the old, non-atomic write
    env = {**fifo_mic.env, "GPIOZERO_PIN_FACTORY": "mock"}
    with (
        Probe(broker.host, broker.port, STATUS) as probe,
        SatelliteProcess(
            ["run", "--config", str(config)], env=env, log_path=tmp_path / "log"
        ) as sat,
    ):
        started = probe.wait_for(is_status(online=True, muted=True, state="muted"), 30)
        assert "unreadable" in json.loads(started.payload)["state_error"]
        warning = next(line for line in sat.log().splitlines() if "starting MUTED" in line)
        assert "WARNING" in warning and str(path) in warning and "delete the file" in warning
        mark = len(probe.received())
        probe.publish(COMMAND, b'{"command":"unmute"}')
        probe.wait_for(is_status(muted=False, state="idle", state_error=None), 5.0, start=mark)
        assert json.loads(path.read_text()) == {"muted": False}


@pytest.mark.integration
@needs_namespaces
def test_daemon_reports_a_mute_it_cannot_save_in_status_until_a_save_works(
    tmp_path: Path, broker: Broker, fifo_mic: FifoMic
) -> None:
    config = room_config(tmp_path / "salon.toml", port=broker.port)
    state = tmp_path / "state"
    env = {**fifo_mic.env, "GPIOZERO_PIN_FACTORY": "mock"}
    log = tmp_path / "log"
    with (
        Probe(broker.host, broker.port, STATUS) as probe,
        SatelliteProcess(
            ["run", "--config", str(config)], env=env, log_path=log, wrap=on_a_full_tmpfs(state)
        ) as sat,
    ):
        probe.wait_for(is_status(online=True, muted=False, state_error=None), 30)
        mark = len(probe.received())
        probe.publish(COMMAND, b'{"command":"mute"}')
        muted = probe.wait_for(is_status(muted=True), 5.0, start=mark)
        assert "No space left on device" in json.loads(muted.payload)["state_error"]
        assert "free space on the file system of" in sat.log()
        # The satellite's own view of the state directory (its private mount).
        seen = seen_by(sat.proc.pid, state)
        assert sorted(p.name for p in seen.iterdir()) == ["fill", "salon.mute.json"]
        assert json.loads((seen / "salon.mute.json").read_text()) == {"muted": False}
        (seen / "fill").unlink()  # space again
        mark = len(probe.received())
        probe.publish(COMMAND, b'{"command":"unmute"}')
        probe.wait_for(is_status(muted=False, state_error=None), 5.0, start=mark)
        probe.publish(COMMAND, b'{"command":"mute"}')
        probe.wait_for(is_status(muted=True, state_error=None), 5.0, start=mark)
        assert json.loads((seen / "salon.mute.json").read_text()) == {"muted": True}
