"""arm64 checked on demand: tests/arm64/run.sh from pytest, only with SATELLITE_TEST_ARM64=1.

About 10 minutes on two cores (emulated apt, pip builds, models, simulate): not for CI.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

RUN = Path(__file__).parent / "arm64" / "run.sh"
LIMIT_S = 4 * 3600

pytestmark = [
    pytest.mark.integration,
    pytest.mark.install,
    pytest.mark.network,
    pytest.mark.root,
    pytest.mark.arm64,
    pytest.mark.timeout(LIMIT_S + 60),
    pytest.mark.skipif(
        os.environ.get("SATELLITE_TEST_ARM64") != "1", reason="set SATELLITE_TEST_ARM64=1"
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="debootstrap, chroot and mounts need root"),
]


def test_install_and_hear_on_emulated_arm64() -> None:
    done = subprocess.run([str(RUN)], capture_output=True, text=True, timeout=LIMIT_S, check=False)
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and lines and lines[-1].startswith("arm64: PASS"), "\n".join(
        lines[-40:]
    )
