#!/usr/bin/python3
"""A stand-in for `satellite run` speaking raw sd_notify, to test the unit under real systemd.

Installed as /opt/satellite/bin/satellite in a test container, so the real unit file (its
hardening, user, groups, watchdog, restart and reload settings) runs it. Standard library
only (the container's python3). The room config's `[standin]` table says what to do:

    ready_delay_s  = 0.0   seconds before READY=1
    exit_status    = -1    >= 0: exit with it before READY (78 = a configuration error)
    watchdog_pings = -1    >= 0: stop pinging after that many pings but keep running (a hung
                           pipeline); < 0: ping forever
    ping_every_s   = 0.0   > 0: ping interval; else half of WATCHDOG_USEC, like the daemon
    read_paths     = []    open each for reading at start and log the outcome
    reload_s       = 0.0   seconds a reload takes (between RELOADING=1 and READY=1)

`reload --pid PID` (the unit's ExecReload) does what `satellite reload` does: SIGHUP, then
wait for the reload record in $RUNTIME_DIRECTORY to show a reload begun after it completed.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
import tomllib
from typing import Any

JOURNAL_SOCKET = "/run/systemd/journal/socket"


def notify(message: str) -> None:
    """One sd_notify datagram to $NOTIFY_SOCKET (abstract names start with '@')."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message.encode(), address)


def journal(message: str, **fields: str) -> None:
    """A structured entry through journald's native socket, as JournalHandler would send."""
    lines = [f"MESSAGE={message}", "PRIORITY=6", *(f"{k}={v}" for k, v in fields.items())]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto("\n".join(lines).encode() + b"\n", JOURNAL_SOCKET)


def log(message: str) -> None:
    """A plain stderr line (journald's stream)."""
    print(f"standin: {message}", file=sys.stderr, flush=True)


def load(path: str) -> dict[str, Any]:
    """The room config: room_id at top level, behaviour in [standin]."""
    with open(path, "rb") as config:
        data = tomllib.load(config)
    standin: dict[str, Any] = data.get("standin", {})
    return {"room_id": data.get("room_id", "?"), **standin}


def probe(paths: list[str]) -> None:
    """Log whether each path opens for reading under the unit's sandbox."""
    for path in paths:
        try:
            with open(path, "rb"):
                log(f"read {path}: ok")
        except OSError as exc:
            log(f"read {path}: {exc.__class__.__name__} errno={exc.errno}")


def watchdog(pings: int, every: float, stop: threading.Event) -> None:
    """WATCHDOG=1 every `every` s (or half of WATCHDOG_USEC); silent after `pings` if >= 0."""
    usec = int(os.environ.get("WATCHDOG_USEC", "0"))
    every = every if every > 0 else usec / 2e6
    sent = 0
    while usec and not stop.wait(every):
        if 0 <= pings <= sent:
            log("pipeline hung: no more watchdog pings")
            return
        notify("WATCHDOG=1")
        sent += 1


def record_path() -> str:
    return os.path.join(os.environ["RUNTIME_DIRECTORY"].split(":")[0], "reload")


def read_record() -> tuple[int, int]:
    try:
        with open(record_path(), encoding="utf-8") as record:
            started, completed, _ = record.read().split(" ", 2)
    except FileNotFoundError:
        return 0, 0
    return int(started), int(completed)


def write_record(started: int, completed: int, outcome: str) -> None:
    tmp = record_path() + ".tmp"
    with open(tmp, "w", encoding="utf-8") as record:
        record.write(f"{started} {completed} {outcome}\n")
    os.replace(tmp, record_path())


def request_reload(pid: int) -> int:
    """ExecReload: SIGHUP the main process and wait (up to 60 s) until it reloaded."""
    before, _ = read_record()
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if read_record()[1] > before:
            log(f"reload of {pid} done")
            return 0
        time.sleep(0.05)
    return 1


def main(argv: list[str]) -> int:
    """`run --config PATH`, or `reload --pid PID`."""
    if argv[0] == "reload":
        return request_reload(int(argv[argv.index("--pid") + 1]))
    config_path = argv[argv.index("--config") + 1]
    config = load(config_path)
    if config.get("exit_status", -1) >= 0:
        log(f"{config_path}: configuration error")
        return int(config["exit_status"])
    stop = threading.Event()
    reload = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: reload.set())
    probe(config.get("read_paths", []))
    time.sleep(config.get("ready_delay_s", 0.0))
    notify(f"READY=1\nSTATUS=room {config['room_id']}: listening")
    journal("ready", ROOM_ID=str(config["room_id"]), SYSLOG_IDENTIFIER="satellite")
    log(f"ready after {config.get('ready_delay_s', 0.0)} s")
    pings, every = config.get("watchdog_pings", -1), config.get("ping_every_s", 0.0)
    pinger = threading.Thread(target=watchdog, args=(pings, every, stop))
    pinger.start()
    reloads = 0
    while not stop.wait(0.05):
        if reload.is_set():
            reload.clear()
            reloads += 1
            write_record(reloads, reloads - 1, "reloading")
            notify(
                f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"
            )
            time.sleep(config.get("reload_s", 0.0))
            config = load(config_path)
            log(f"reloaded {config_path}")
            notify("READY=1")
            write_record(reloads, reloads, "ok")
    notify("STOPPING=1")
    log("stopping")
    pinger.join()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
