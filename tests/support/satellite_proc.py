"""Runs the real `satellite` console entry point as a subprocess with a test-owned config."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tests.support import tiers

ROOT = Path(__file__).resolve().parents[2]
HATS_DIR = ROOT / "firmware-config" / "hats"  # the HAT profiles of this checkout


def models_dir() -> Path:
    """Where install.sh --dev put the models (or SATELLITE_TEST_MODELS_DIR)."""
    return Path(os.environ.get("SATELLITE_TEST_MODELS_DIR", ROOT / ".cache" / "models"))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path: Path, sections: Mapping[str, Mapping[str, Any]], **top: Any) -> Path:
    """A room TOML: `top` keys first, then one table per section."""
    lines = [f"{key} = {_toml_value(value)}" for key, value in top.items()]
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def room_config(
    path: Path, *, port: int, room_id: str = "salon", satellite_id: str = "sat1", **extra: Any
) -> Path:
    """The standard test room: fifomic, hey_jarvis at the default threshold, broker on `port`."""
    sections: dict[str, dict[str, Any]] = {
        "mqtt": {"host": "127.0.0.1", "port": port, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0},
        "audio": {"device": "fifomic"},
        "leds": {"hats_dir": str(HATS_DIR)},
        "wake": {"models": ["hey_jarvis"]},
        "models": {"dir": str(models_dir())},
    }
    for name, values in extra.items():
        sections.setdefault(name, {}).update(values)
    state_dir = str(path.parent / "state")
    return write_config(
        path, sections, room_id=room_id, satellite_id=satellite_id, state_dir=state_dir
    )


class SatelliteProcess:
    """`python -m satellite ARGS` with stderr captured to a file; stopped with SIGTERM."""

    def __init__(
        self,
        args: list[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        wrap: Callable[[list[str]], list[str]] = lambda argv: argv,
    ) -> None:
        tiers.require("integration", "runs the daemon")
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(  # `wrap` must exec the command (same pid, for signals)
            wrap([sys.executable, "-m", "satellite", *args]),
            env=dict(env),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then the exit status (SIGKILL and AssertionError after `timeout`)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise AssertionError(f"satellite ignored SIGTERM;\n{self.log()}") from None
        return self.proc.returncode

    def log(self) -> str:
        """Everything written to stderr so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def close(self) -> None:
        """Stop if running and release files; idempotent."""
        try:
            self.stop()
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self._log.close()

    def __enter__(self) -> SatelliteProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
