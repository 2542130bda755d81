"""A process that only captures, for microphone fault tests (`-m tests.support.mic_runner DEV`).

ALSA reads ~/.asoundrc when PortAudio starts, so the process under test must have the test's
HOME from its first instruction: hence a subprocess. It prints one line per event on stdout,
which `MicRunner` (the test side) timestamps on arrival:

    fault <reason>                       on_fault(reason)
    recovered                            on_fault(None)
    stats <chunks> <heartbeat> <generation> <rate>   every 0.2 s
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parents[2]
STATS_S = 0.2


# --- the process under test -----------------------------------------------------------------


def main(argv: list[str]) -> int:
    """Capture from device argv[0] until SIGTERM, printing events and stats."""
    from satellite.audio.capture import Capture
    from satellite.config import AudioSettings

    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG, format="%(asctime)s %(message)s")
    lock = threading.Lock()

    def say(line: str) -> None:
        with lock:
            print(line, flush=True)

    def on_fault(reason: str | None) -> None:
        say("recovered" if reason is None else f"fault {reason}")

    stop = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    capture = Capture(AudioSettings(device=argv[0]), on_fault=on_fault)
    capture.open()
    chunks, next_stats = 0, 0.0
    while not stop.is_set():
        if capture.read(timeout=0.05) is not None:
            chunks += 1
        if time.monotonic() >= next_stats:
            next_stats = time.monotonic() + STATS_S
            say(f"stats {chunks} {capture.heartbeat} {capture.generation} {capture.rate}")
    capture.close()
    return 0


# --- the test side --------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One line the runner printed, and the monotonic time we read it."""

    text: str
    at: float

    @property
    def stats(self) -> tuple[int, int, int, int]:
        """(chunks, heartbeat, generation, rate) of a `stats` line."""
        chunks, heartbeat, generation, rate = (int(x) for x in self.text.split()[1:])
        return chunks, heartbeat, generation, rate


class MicRunner:
    """Runs `main` in a subprocess with `env`; collects its stdout lines with their times."""

    def __init__(
        self,
        device: str,
        *,
        env: Mapping[str, str],
        log_path: Path,
        wrap: Callable[[list[str]], list[str]] = lambda argv: argv,
    ) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        argv = [sys.executable, "-m", "tests.support.mic_runner", device]
        self.proc = subprocess.Popen(
            wrap(argv), env=dict(env), cwd=ROOT, stdout=subprocess.PIPE, stderr=self._log
        )
        self._lines: list[Line] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="mic-runner", daemon=True)
        self._reader.start()

    def wait_for(
        self, predicate: Callable[[Line], bool], timeout: float, *, after: float = 0.0
    ) -> Line:
        """The first line since `after` that matches; AssertionError after `timeout` s."""

        def found() -> Line | None:
            return next((x for x in self._lines if x.at >= after and predicate(x)), None)

        with self._changed:
            if self._changed.wait_for(lambda: found() is not None, timeout):
                line = found()
                assert line is not None
                return line
        raise AssertionError(f"no matching line within {timeout} s;\n{self.log()[-3000:]}")

    def stats_after(self, after: float) -> Line:
        """The first `stats` line printed after `after` (waiting until then if need be)."""
        timeout = max(0.0, after - time.monotonic()) + 2.0
        return self.wait_for(lambda x: x.text.startswith("stats"), timeout, after=after)

    def lines(self) -> list[Line]:
        """Every line so far."""
        with self._changed:
            return list(self._lines)

    def log(self) -> str:
        """The runner's stderr (its log, DEBUG included)."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def close(self) -> None:
        """SIGTERM, wait (bounded), release files; idempotent."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()

    def __enter__(self) -> MicRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        for raw in iter(stdout.readline, b""):
            line = Line(raw.decode(errors="replace").rstrip("\n"), time.monotonic())
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
