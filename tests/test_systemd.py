"""sd_notify wrapper and the watchdog gate, without systemd."""

from __future__ import annotations

from satellite.runtime.systemd import Liveness, Notifier, WatchdogGate


def alive(frames: int, heartbeat: int = 0, faulted: bool = False) -> Liveness:
    return Liveness(frames, heartbeat, faulted)


def test_watchdog_pings_only_while_frames_advance() -> None:
    gate = WatchdogGate()
    assert not gate.should_ping(alive(0))
    assert gate.should_ping(alive(10))
    assert not gate.should_ping(alive(10, heartbeat=99))
    assert gate.should_ping(alive(11))


def test_watchdog_counts_the_retry_heartbeat_only_while_the_mic_is_faulty() -> None:
    gate = WatchdogGate()
    gate.should_ping(alive(10, 10))
    assert gate.should_ping(alive(10, 11, faulted=True))
    assert not gate.should_ping(alive(10, 11, faulted=True))  # a hung retry stops the pings
    assert not gate.should_ping(alive(10, 12, faulted=False))


def test_notifier_is_silent_without_notify_socket() -> None:
    sent: list[str] = []
    notifier = Notifier.from_environ({"WATCHDOG_USEC": "2000000"}, send=sent.append)
    notifier.ready()
    notifier.watchdog()
    assert sent == [] and notifier.watchdog_interval_s is None


def test_notifier_sends_and_deduplicates_status() -> None:
    sent: list[str] = []
    env = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "10000000"}
    notifier = Notifier.from_environ(env, send=sent.append)
    notifier.ready()
    notifier.status("room salon")
    notifier.status("room salon")
    notifier.watchdog()
    assert sent == ["READY=1", "STATUS=room salon", "WATCHDOG=1"]
    assert notifier.watchdog_interval_s == 5.0


def test_notifier_ignores_a_watchdog_meant_for_another_pid() -> None:
    env = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}
    assert Notifier.from_environ(env, send=print).watchdog_usec is None
