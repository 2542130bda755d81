"""Check steps with a deadline: on a thread we stop waiting for, or in a child we can kill."""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

from satellite.commands.checks.result import Result

_KILL_WAIT_S = 1.0


def in_thread(
    step: Callable[[], list[Result]], *, timeout: float, on_timeout: Callable[[], list[Result]]
) -> list[Result]:
    """`step()` on a daemon thread; `on_timeout()` when it has not returned within `timeout` s.

    For steps that only wait (DNS, sockets) and change no process-wide state: the thread is
    abandoned, and whatever it waits for ends with the process.
    """
    outcome: queue.SimpleQueue[tuple[list[Result], None] | tuple[None, Exception]]
    outcome = queue.SimpleQueue()

    def run() -> None:
        try:
            outcome.put((step(), None))
        except Exception as exc:  # raised again on the caller's thread
            outcome.put((None, exc))

    threading.Thread(target=run, name="check-step", daemon=True).start()
    try:
        results, error = outcome.get(timeout=timeout)
    except queue.Empty:
        return on_timeout()
    if error is not None:
        raise error
    assert results is not None
    return results


class Child:
    """A Python child process that answers in `prefix`ed stdout lines, each awaited with a
    timeout; closing kills it. For steps in native code that may block for good (a device's
    open), which no thread can interrupt; other stdout lines are passed on to stderr.
    """

    def __init__(self, code: str, *, stdin: str, prefix: str) -> None:
        self.prefix = prefix
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=child_env(os.environ),
            text=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None  # PIPEs
        self.proc.stdin.write(stdin)
        self.proc.stdin.close()
        self._lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        # The reader thread ends at EOF, which killing the child brings.
        reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        reader.start()

    def line(self, timeout: float) -> str | None:
        """The next answer without its prefix; "" once the child has exited, None when
        nothing came within `timeout` s."""
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        """Kill the child if it still runs; waits at most about a second."""
        if self.proc.poll() is None:
            self.proc.kill()
            # Blocked in the kernel, it dies when the call returns: we do not wait for that.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(_KILL_WAIT_S)

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, stdout: IO[str]) -> None:
        for raw in stdout:
            if raw.startswith(self.prefix):
                self._lines.put(raw[len(self.prefix) :].rstrip("\n"))
            else:
                sys.stderr.write(raw)
        stdout.close()
        self._lines.put("")


def child_env(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` with this `satellite` package first on the path: the child runs our code."""
    root = str(Path(__file__).resolve().parents[2])
    path: Sequence[str] = [root, *filter(None, environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**environ, "PYTHONPATH": os.pathsep.join(path)}
