"""Lays out a satellite install (unit, user, /opt/satellite, room config) in a test root.

Mirrors what install.sh does on a Pi, for a `SystemdContainer` or a plain root directory:
the real unit file at /etc/systemd/system, a `satellite` system user in audio/gpio/spi,
/etc/satellite/<room>.toml (0640 root:satellite) and /opt/satellite/bin/satellite, which is
either the sd_notify stand-in or the real daemon. For the real daemon, /opt/satellite is a
venv over the root's own python3.11 whose packages are the host venv's, bound read-only.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

import satellite
from tests.support.fifo_mic import ASOUNDRC
from tests.support.systemd_container import ROOT, ContainerError, SystemdContainer

UNIT_FILE = ROOT / "systemd" / "satellite@.service"
UNIT_PATH = "/etc/systemd/system/satellite@.service"
STANDIN = Path(__file__).with_name("notify_standin.py")
PREFIX = "/opt/satellite"
PYTHON = "python3.11"  # Debian 12's, in the container root and on a Pi
SITE = f"{PREFIX}/lib/{PYTHON}/site-packages"
HOST_SITE = f"{PREFIX}/lib/{PYTHON}/host-site-packages"
MODELS = f"{PREFIX}/models"
MIC_DIR = "/srv/mic"
ENTRY_POINT = f"""#!{PREFIX}/bin/python
import sys
from satellite.commands.cli import main
sys.exit(main())
"""
# What install.sh does for the user; groupadd for gpio/spi where the OS has none.
ADD_USER = """
set -e
for group in gpio spi; do getent group "$group" >/dev/null || groupadd --system "$group"; done
id satellite >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /var/lib/satellite \
    --shell /usr/sbin/nologin satellite
usermod -a -G audio,gpio,spi satellite
"""


def install_unit(root: SystemdContainer) -> None:
    """The repository's unit file, unchanged."""
    root.copy_in(UNIT_FILE, UNIT_PATH, mode=0o644)


def install_standin(root: SystemdContainer) -> None:
    """/opt/satellite/bin/satellite = the raw sd_notify stand-in (container's python3)."""
    root.copy_in(STANDIN, f"{PREFIX}/bin/satellite", mode=0o755)


def add_user(container: SystemdContainer) -> None:
    """The `satellite` system user in audio, gpio and spi (run after boot)."""
    container.run("sh", "-c", ADD_USER)


def write_room_config(container: SystemdContainer, room: str, text: str) -> None:
    """/etc/satellite/ROOM.toml, 0640 root:satellite like install.sh writes it (after boot)."""
    path = f"/etc/satellite/{room}.toml"
    container.write_file(path, text, mode=0o640)
    container.run("chgrp", "satellite", path)


def install_venv(container: SystemdContainer, *, models: Path) -> None:
    """/opt/satellite as a venv on the root's python3.11 with the host venv's packages (ro)."""
    if sysconfig.get_python_version() != PYTHON.removeprefix("python"):
        raise ContainerError(f"the host venv is Python {sys.version}, the root has {PYTHON}")
    container.binds += [
        (Path(sysconfig.get_paths()["purelib"]), HOST_SITE),
        (Path(satellite.__file__).parent, f"{PREFIX}/src/satellite"),
        (models, MODELS),
    ]
    install_entry_point(container.path(PREFIX))
    # addsitedir also runs the host packages' .pth files; our source shadows the editable one.
    container.write_file(f"{SITE}/host.pth", f"import site; site.addsitedir({HOST_SITE!r})\n")
    container.path(f"{SITE}/satellite").symlink_to(f"{PREFIX}/src/satellite")


def install_entry_point(prefix: Path) -> None:
    """PREFIX/bin/satellite and the venv's python, as pip installs them on a Pi."""
    (prefix / "bin").mkdir(parents=True, exist_ok=True)
    (prefix / "pyvenv.cfg").write_text("home = /usr/bin\n", encoding="utf-8")
    (prefix / "bin" / "python3").symlink_to(f"/usr/bin/{PYTHON}")
    (prefix / "bin" / "python").symlink_to("python3")
    (prefix / "bin" / "satellite").write_text(ENTRY_POINT, encoding="utf-8")
    (prefix / "bin" / "satellite").chmod(0o755)


def install_fifo_mic(container: SystemdContainer, name: str = "fifomic") -> str:
    """/etc/asound.conf with an ALSA `file` PCM reading MIC_DIR/NAME.fifo; returns NAME."""
    fifo = f"{MIC_DIR}/{name}.fifo"
    container.write_file("/etc/asound.conf", ASOUNDRC.format(name=name, fifo=fifo))
    return name
