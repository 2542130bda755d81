"""The unit file: `systemd-analyze verify` is clean, exposure at most 2.0, the contract holds.

Both commands run with `--root=` on the cached Debian 12 debootstrap root (the one the system
tests boot), with the unit at /etc/systemd/system and /opt/satellite/bin/satellite laid out as
install.sh lays it out: targets, /bin/kill and the entry point are resolved in a real Debian
root, not on whatever machine runs the tests. The template is instantiated by systemd itself.

The first run on a machine builds that root with debootstrap from the network (up to
ROOT_BUILD_TIMEOUT_S); the tests that need it carry that timeout and the `network` marker.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.systemd_container import (
    ROOT_BUILD_TIMEOUT_S,
    ContainerError,
    DebianRoot,
    _build_tarball,
    root_tarball,
    unmount_under,
)
from tests.support.unit_install import PREFIX, UNIT_FILE, UNIT_PATH, install_entry_point

INSTANCE = "satellite@salon.service"
MAX_EXPOSURE = 2.0
EXPOSURE = re.compile(r"Overall exposure level for (\S+): (\d+\.\d+)")
# Building the root, unpacking it and the analyses, with room to spare on a loaded machine.
ROOT_TIMEOUT_S = ROOT_BUILD_TIMEOUT_S + 300


@pytest.fixture(scope="module")
def unit_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A Debian 12 root with the repository's unit and the satellite entry point installed."""
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd")
    try:
        tarball = root_tarball()
    except ContainerError as exc:
        if os.geteuid() == 0:
            raise
        pytest.skip(f"no cached Debian root and debootstrap needs root: {exc}")
    with DebianRoot(tarball, parent=tmp_path_factory.getbasetemp()) as root:
        shutil.copy(UNIT_FILE, root.path / UNIT_PATH.lstrip("/"))
        install_entry_point(root.path / PREFIX.lstrip("/"))
        yield root.path


def analyze(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", f"--root={root}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"},
    )


@pytest.mark.integration
@pytest.mark.network
@pytest.mark.timeout(ROOT_TIMEOUT_S)
def test_verify_is_clean(unit_root: Path) -> None:
    # verify exits 0 on unknown keys and bad values: any output at all is a finding.
    done = analyze(unit_root, "verify", INSTANCE)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


@pytest.mark.integration
@pytest.mark.network
@pytest.mark.timeout(ROOT_TIMEOUT_S)
def test_verify_reports_what_it_should(unit_root: Path) -> None:
    # The same root catches a bad key and a missing executable: the clean run above means something.
    broken = unit_root / "etc/systemd/system/broken@.service"
    text = UNIT_FILE.read_text(encoding="utf-8").replace(
        "ExecStart=/opt/satellite/bin/satellite", "ExecStart=/opt/satellite/bin/missing"
    )
    broken.write_text(text.replace("[Service]\n", "[Service]\nWatchDogSec=10s\n"), "utf-8")
    try:
        done = analyze(unit_root, "verify", "broken@salon.service")
    finally:
        broken.unlink()
    assert "Unknown key 'WatchDogSec'" in done.stderr
    assert "/opt/satellite/bin/missing is not executable" in done.stderr


@pytest.mark.integration
@pytest.mark.network
@pytest.mark.timeout(ROOT_TIMEOUT_S)
def test_security_exposure_is_at_most_2(
    unit_root: Path, record_property: Callable[[str, object], None]
) -> None:
    # --threshold counts on a 0-100 scale; the printed exposure is 0-10.
    done = analyze(
        unit_root, "security", "--offline=true", f"--threshold={MAX_EXPOSURE * 10:.0f}", INSTANCE
    )
    found = EXPOSURE.search(done.stdout)
    assert found is not None, done.stdout + done.stderr
    exposure = float(found.group(2))
    record_property("exposure", exposure)
    print(f"{INSTANCE}: systemd-analyze security exposure {exposure}")
    unmet = [line for line in done.stdout.splitlines() if line.startswith("✗")]
    assert exposure <= MAX_EXPOSURE, "\n".join(unmet)
    assert done.returncode == 0, done.stderr


def unit_settings() -> dict[str, list[str]]:
    """KEY -> values in order, from the unit file's sections (repeated keys accumulate)."""
    settings: dict[str, list[str]] = {}
    for line in UNIT_FILE.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_unit_keeps_the_contract() -> None:
    settings = unit_settings()
    expected = {
        "Type": ["notify"],
        "NotifyAccess": ["main"],
        "ExecStart": ["/opt/satellite/bin/satellite run --config /etc/satellite/%i.toml"],
        "ExecReload": ["/opt/satellite/bin/satellite reload --pid $MAINPID"],
        "Restart": ["on-failure"],
        "RestartPreventExitStatus": ["78"],
        "User": ["satellite"],
        "SupplementaryGroups": ["audio gpio spi"],
        "StateDirectory": ["satellite"],
        "DevicePolicy": ["closed"],
        "RestrictAddressFamilies": ["AF_UNIX AF_INET AF_INET6"],
    }
    assert {key: settings.get(key) for key in expected} == expected
    assert sorted(settings["DeviceAllow"]) == [
        "char-alsa rw",
        "char-gpiochip rw",
        "char-spi rw",
    ]
    assert settings["WatchdogSec"] and settings["WatchdogSec"] != ["0"]


# A debootstrap that mounts in its target what the real one mounts, then fails or hangs.
FAKE_DEBOOTSTRAP = """#!/bin/sh
target=$4
mkdir -p "$target/proc" "$target/sys"
mount -t proc proc "$target/proc" && mount -t tmpfs tmpfs "$target/sys" && touch "$MOUNTED"
case "$FAKE_END" in hang) sleep 120 ;; *) exit 1 ;; esac
"""


@pytest.mark.integration
@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")
@pytest.mark.parametrize("end", ["fail", "hang"])
def test_a_failed_root_build_leaves_nothing_mounted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, end: str
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "debootstrap").write_text(FAKE_DEBOOTSTRAP)
    (bin_dir / "debootstrap").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("MOUNTED", str(tmp_path / "mounted"))
    monkeypatch.setenv("FAKE_END", end)
    monkeypatch.setenv("SATELLITE_TEST_DEBIAN_MIRROR", "http://mirror.invalid/debian")
    cache = tmp_path / "cache"
    cache.mkdir()
    with pytest.raises(ContainerError, match="took longer" if end == "hang" else "failed"):
        _build_tarball(cache / "root.tar.zst", timeout=5)
    assert (tmp_path / "mounted").exists()  # it did mount
    assert unmount_under(tmp_path) == []  # nothing of it is mounted here
    assert list(cache.iterdir()) == []  # and its temp dir is gone
