"""A real mosquitto broker on a loopback port, started and stopped by tests."""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.support import tiers

MOSQUITTO = Path("/usr/sbin/mosquitto")
HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A TCP port nothing listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_accepts(host: str, port: int) -> bool:
    """Whether a TCP connection to host:port succeeds now."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL after 5 s; nothing for None."""
    if process is None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def wait_listening(broker: Any, name: str) -> None:
    """Until `broker` (host, port, running, start_timeout, stop(), logs()) accepts TCP; a
    broker that exits or stays deaf is stopped and reported with its log."""
    deadline = time.monotonic() + broker.start_timeout
    while not port_accepts(broker.host, broker.port):
        if not broker.running:
            broker.stop()
            raise AssertionError(f"{name} exited at start:\n{broker.logs()}")
        if time.monotonic() > deadline:
            broker.stop()
            raise AssertionError(f"{name} not listening after {broker.start_timeout} s")
        time.sleep(0.02)  # polling interval, bounded by the deadline above


class Broker:
    """Debian's mosquitto on 127.0.0.1:`port`; restartable on the same port.

    `extra_config` lines are appended after the listener line (ACL, password, TLS variants).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        extra_config: str = "",
        start_timeout: float = 5.0,
    ) -> None:
        self.host = HOST
        self.port = port if port is not None else free_port()
        self.workdir = workdir
        self.config_path = workdir / "mosquitto.conf"
        self.log_path = workdir / "mosquitto.log"
        self.stderr_path = workdir / "mosquitto.stderr"
        self.extra_config = extra_config
        self.start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start mosquitto and return once its port accepts TCP connections."""
        tiers.require("integration", "starts mosquitto")
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self._config())
        with self.stderr_path.open("ab") as stderr:
            self._process = subprocess.Popen(
                [str(MOSQUITTO), "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
            )
        self._wait_until_listening()

    def stop(self) -> None:
        """Stop mosquitto (SIGTERM, then SIGKILL after 5 s); idempotent."""
        process, self._process = self._process, None
        stop_process(process)

    def logs(self) -> str:
        """Everything mosquitto logged so far (log file and stderr)."""
        paths = (self.log_path, self.stderr_path)
        return "\n".join(p.read_text(errors="replace") for p in paths if p.exists())

    def __enter__(self) -> Broker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _config(self) -> str:
        user = pwd.getpwuid(os.getuid()).pw_name  # as root, mosquitto would drop to "mosquitto"
        lines = [
            f"user {user}",
            "persistence false",
            f"log_dest file {self.log_path}",
            "log_type all",
            "log_timestamp_format %H:%M:%S",
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            self.extra_config,
        ]
        return "\n".join(lines) + "\n"

    def _wait_until_listening(self) -> None:
        wait_listening(self, "mosquitto")
