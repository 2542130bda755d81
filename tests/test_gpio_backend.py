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
