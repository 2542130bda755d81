"""LEDs and button as accessories: a fault that is reported and retried, never fatal."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero import DigitalOutputDevice
from gpiozero.pins.mock import MockFactory, MockPWMPin

from satellite.config import ButtonSettings, LedSettings
from satellite.errors import ConfigError
from satellite.leds.accessories import Accessories
from tests.support.broker import Broker
from tests.support.fifo_mic import FifoMic
from tests.support.mqtt_probe import Probe
from tests.support.notify_socket import NotifySocket
from tests.support.satellite_proc import HATS_DIR, SatelliteProcess, room_config
from tests.support.speech import speak

FAST = (0.01, 0.05)


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    mock = MockFactory(pin_class=MockPWMPin)
    yield mock
    mock.reset()


class Faults:
    """Records every on_fault call; `wait` for a given one."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []
        self._changed = threading.Condition()

    def __call__(self, reason: str | None) -> None:
        with self._changed:
            self.seen.append(reason)
            self._changed.notify_all()

    def wait(self, reason: str | None, timeout: float = 5.0) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: reason in self.seen, timeout), self.seen


def accessories(
    factory: MockFactory, faults: Faults, presses: list[int] | None = None, **leds: object
) -> Accessories:
    return Accessories(
        LedSettings.model_validate({"hat": "gpio-led", "hats_dir": HATS_DIR, **leds}),
        ButtonSettings(),
        on_press=lambda: (presses if presses is not None else []).append(1),
        on_fault=faults,
        pin_factory=factory,
        retry_s=FAST,
    )


def test_everything_opens_no_fault_and_the_pattern_shows(factory: MockFactory) -> None:
    faults = Faults()
    acc = accessories(factory, faults)
    acc.start()
    try:
        assert acc.fault is None and faults.seen == [None]
        acc.set_pattern("muted")
        assert acc.pattern == "muted"
    finally:
        acc.close()


def test_leds_in_use_are_a_fault_then_open_when_freed(factory: MockFactory) -> None:
    faults = Faults()
    holder = DigitalOutputDevice(27, pin_factory=factory)  # another program has the LED pin
    acc = accessories(factory, faults)
    acc.start()
    try:
        assert acc.fault is not None and "cannot open the single LEDs" in acc.fault
        assert faults.seen == [acc.fault]  # once, however often it is retried
        acc.set_pattern("muted")  # remembered while the LEDs are closed
        assert not acc.wait_shown("muted", 0.1)
        holder.close()
        faults.wait(None)
        assert acc.fault is None
        assert acc.wait_shown("muted", 5.0), "the remembered pattern is not shown"
    finally:
        acc.close()
        holder.close()


def test_a_button_in_use_is_a_fault_and_works_once_it_opens(factory: MockFactory) -> None:
    faults, presses = Faults(), list[int]()
    holder = DigitalOutputDevice(17, pin_factory=factory)
    acc = accessories(factory, faults, presses)
    acc.start()
    try:
        assert acc.fault is not None and "button: cannot open GPIO17" in acc.fault
        holder.close()
        faults.wait(None)
        pin = factory.pin(17)
        pin.drive_low()
        pin.drive_high()
        assert presses == [1]
    finally:
        acc.close()
        holder.close()


def test_close_stops_the_retries(factory: MockFactory) -> None:
    faults = Faults()
    holder = DigitalOutputDevice(27, pin_factory=factory)
    acc = accessories(factory, faults)
    acc.start()
    acc.close()
    holder.close()
    assert acc.fault is not None  # nobody retried after close
    acc.close()  # idempotent


def test_a_hat_that_cannot_work_is_a_config_error(factory: MockFactory) -> None:
    with pytest.raises(ConfigError):
        accessories(factory, Faults(), driver="rgb", pins=[5])


@pytest.mark.integration
def test_the_daemon_listens_without_its_hat_and_says_so(
    tmp_path: Path, broker: Broker, fifo_mic: FifoMic, speech_cache: Path
) -> None:
    config = room_config(tmp_path / "salon.toml", port=broker.port, leds={"hat": "respeaker-2mic"})
    room = "v1/voice_assistant/room/salon"
    with (
        NotifySocket(tmp_path / "notify.sock") as notify,
        Probe(broker.host, broker.port, f"{room}/#") as probe,
        SatelliteProcess(
            ["run", "--config", str(config)],
            env={**fifo_mic.env, "NOTIFY_SOCKET": str(notify.path)},
            log_path=tmp_path / "log",
        ) as sat,
    ):
        assert notify.wait_for(lambda n: n.line == "READY=1", 30), sat.log()
        line = notify.wait_for(lambda n: "LEDs/button FAULT" in n.line, 10)
        assert line is not None and "cannot open the apa102 LEDs" in line.line
        status = probe.wait_for(
            lambda m: m.topic.endswith("/status") and b"accessory_fault" in m.payload, 10
        )
        assert json.loads(status.payload)["online"] is True
        fifo_mic.feed(speak("hey jarvis, stop the music", cache_dir=speech_cache))
        final = probe.wait_for(lambda m: m.topic.endswith("/transcript/final"), 20)
        assert json.loads(final.payload)["text"] == "stop the music"
        assert sat.proc.poll() is None
        assert sat.stop() == 0
