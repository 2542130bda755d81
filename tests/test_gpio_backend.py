"""The GPIO backend install.sh puts into the venv: a real lgpio, spidev, and gpiozero taking lgpio.

These run against the venv that runs the tests, the one `./install.sh --dev` made; on a Pi,
install.sh puts the same pins into /opt/satellite (tests/arm64/run.sh checks that one on arm64).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PROBE = Path(__file__).parent / "support" / "gpio_probe.py"
INSTALL = Path(__file__).resolve().parent.parent / "install.sh"
# A Raspberry Pi 4's /proc/cpuinfo, as far as gpiozero reads it (the board revision).
PI4_CPUINFO = """processor\t: 0
CPU implementer\t: 0x41
CPU part\t: 0xd08

Hardware\t: BCM2835
Revision\t: c03111
Model\t\t: Raspberry Pi 4 Model B Rev 1.1
"""


def probe(tmp_path: Path, *wrapper: str) -> dict[str, Any]:
    """gpio_probe.py in this venv, GPIOZERO_PIN_FACTORY unset, run through `wrapper`."""
    env = {key: value for key, value in os.environ.items() if key != "GPIOZERO_PIN_FACTORY"}
    done = subprocess.run(
        [*wrapper, sys.executable, str(PROBE)],
        cwd=tmp_path,  # lgpio makes its notification FIFOs in the working directory
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_the_venv_has_a_real_lgpio_and_spidev(tmp_path: Path) -> None:
    report = probe(tmp_path)
    assert report["lgpio"]["ok"], f"{report['lgpio']}: run ./install.sh --dev"
    # Not PyPI's empty placeholder release, and the venv's own, not the OS's.
    assert report["lgpio"]["real"]
    assert Path(report["lgpio"]["file"]).is_relative_to(sys.prefix)
    assert report["spidev"]["ok"], f"{report['spidev']}: run ./install.sh --dev"


@pytest.mark.integration
@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="a mount namespace needs root")
def test_gpiozero_tries_lgpio_first_on_a_pi(tmp_path: Path) -> None:
    # A Pi 4 by its /proc/cpuinfo (bound over the real one in a private mount namespace).
    # Without a /dev/gpiochip0 lgpio cannot open the chip, so gpiozero goes on to the next
    # factory; what must show is that lgpio came first and got as far as the chip.
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(PI4_CPUINFO)
    bind = 'mount --bind "$0" /proc/cpuinfo && exec "$@"'
    unshare = ("unshare", "--mount", "--propagation", "private", "sh", "-c", bind, str(cpuinfo))
    report = probe(tmp_path, *unshare)
    if Path("/dev/gpiochip0").exists():  # a real Pi (or gpio-sim): lgpio must simply win
        assert report["factory"] == "LGPIOFactory", report
        return
    assert report["fallbacks"][0] == "Falling back from lgpio: 'can not open gpiochip'", report


def install_backend(
    venv: Path, find_links: Path, *, swig: bool
) -> subprocess.CompletedProcess[str]:
    """install.sh's install_gpio_backend into a new venv, pip seeing only `find_links`."""
    # (venv installs its pip offline, from the copy inside Python.)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    apt = "" if swig else "apt_install() { return 1; }"  # swig cannot be had
    return subprocess.run(
        ["bash", "-c", f'source "{INSTALL}"; {apt}\ninstall_gpio_backend "{venv}"'],
        env={**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(find_links)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.integration
@pytest.mark.install
def test_no_gpio_backend_is_said_once_and_is_not_fatal(tmp_path: Path) -> None:
    # A non-Pi that cannot get lgpio or spidev at all: --dev must go on.
    (tmp_path / "nothing").mkdir()
    done = install_backend(tmp_path / "venv", tmp_path / "nothing", swig=False)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stdout.splitlines() if "warning" in line]
    assert len(warnings) == 1, done.stdout
    assert "lgpio" in warnings[0] and "spidev" in warnings[0] and "fall back" in warnings[0]


@pytest.mark.integration
@pytest.mark.install
@pytest.mark.network
@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="installs swig with apt")
def test_without_an_lgpio_wheel_it_is_built_with_the_lg_library_inside(tmp_path: Path) -> None:
    # What happens on Python 3.13 (no lgpio wheel there): pip sees only the sdists here.
    sdists = tmp_path / "sdists"
    pip = [sys.executable, "-m", "pip", "download", "-q", "-d", str(sdists)]
    sources = ["--no-deps", "--no-binary", ":all:", "lgpio==0.2.2.0", "spidev==3.8"]
    subprocess.run([*pip, *sources], check=True, timeout=300)
    subprocess.run([*pip, "--only-binary", ":all:", "setuptools", "wheel"], check=True, timeout=300)
    done = install_backend(tmp_path / "venv", sdists, swig=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "building it from its source" in done.stdout
    assert "warning" not in done.stdout, done.stdout
    python = tmp_path / "venv/bin/python"
    imported = subprocess.run(
        [str(python), "-c", "import lgpio, _lgpio; print(_lgpio.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    # PYPI=1 linked the lg library into the module: nothing of the OS's is needed at run time.
    linked = subprocess.run(
        ["ldd", imported.stdout.strip()], capture_output=True, text=True, timeout=30, check=True
    )
    assert "liblgpio" not in linked.stdout
