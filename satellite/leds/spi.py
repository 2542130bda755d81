"""Bit-banged SPI for the APA102 strip where there is no hardware SPI (gpiozero's MockFactory,
a Pi without the SPI overlay), built with the pin factory it is given and no other.

gpiozero 2.0.1's SPISoftwareBus calls `Device.__init__()` without the factory it was given,
so Device loads (and sets) the global default factory: off a Pi it fails, on a Pi it would
change `Device.pin_factory` for everybody. These two classes are gpiozero's SPISoftware and
SPISoftwareBus with the factory handed on; the transfer logic is gpiozero's own.
"""

from __future__ import annotations

from threading import RLock
from typing import Any

from gpiozero import Device, InputDevice, OutputDevice
from gpiozero.pins.pi import SPI_HARDWARE_PINS
from gpiozero.pins.spi import SPISoftware, SPISoftwareBus

Pin = int | str  # a BCM number or a gpiozero pin name ("GPIO11")


class _Bus(SPISoftwareBus):  # type: ignore[misc]
    """The clock, MOSI and MISO lines, shared per factory and pins like gpiozero's bus."""

    def __init__(
        self, clock_pin: Pin, mosi_pin: Pin | None, miso_pin: Pin | None, *, pin_factory: Any
    ) -> None:
        self.lock = None
        self.clock = None
        self.mosi = None
        self.miso = None
        Device.__init__(self, pin_factory=pin_factory)  # what SPISoftwareBus leaves out
        self.lock = RLock()
        try:
            self.clock = OutputDevice(clock_pin, active_high=True, pin_factory=pin_factory)
            if mosi_pin is not None:
                self.mosi = OutputDevice(mosi_pin, pin_factory=pin_factory)
            if miso_pin is not None:
                self.miso = InputDevice(miso_pin, pin_factory=pin_factory)
        except BaseException:
            self.close()
            raise

    @classmethod
    def _shared_key(
        cls, clock_pin: Pin, mosi_pin: Pin | None, miso_pin: Pin | None, *, pin_factory: Any
    ) -> tuple[object, ...]:
        # gpiozero keys its bus by pins only: two factories' buses would be one.
        return (cls, clock_pin, mosi_pin, miso_pin, pin_factory)


class SoftwareSpi(SPISoftware):  # type: ignore[misc]
    """One device (chip select) on a bit-banged bus; every pin from `pin_factory`."""

    def __init__(
        self,
        clock_pin: Pin,
        mosi_pin: Pin | None,
        miso_pin: Pin | None,
        select_pin: Pin,
        *,
        pin_factory: Any,
    ) -> None:
        self._bus = None
        self._select = None
        # SPISoftware.__init__ would build gpiozero's bus: start one class further up.
        super(SPISoftware, self).__init__(pin_factory=pin_factory)
        try:
            self._clock_phase = False
            self._lsb_first = False
            self._bits_per_word = 8
            self._bus = _Bus(clock_pin, mosi_pin, miso_pin, pin_factory=pin_factory)
            self._select = OutputDevice(select_pin, active_high=False, pin_factory=pin_factory)
        except BaseException:
            self.close()
            raise


def software_spi_only(pin_factory: Any) -> bool:
    """Whether `pin_factory` has no hardware SPI (its "hardware" class bit-bangs too)."""
    get_class = getattr(pin_factory, "_get_spi_class", None)  # gpiozero's Pi factories'
    if get_class is None:
        return False
    return issubclass(get_class(shared=False, hardware=True), SPISoftware)


def open_spi(port: int, device: int, *, pin_factory: Any) -> Any:
    """SPI `port`/`device` (CE0, CE1…): the factory's hardware SPI if it has one, else
    SoftwareSpi on the same pins, every part built with `pin_factory`."""
    if not software_spi_only(pin_factory):
        return pin_factory.spi(port=port, device=device)
    pins = SPI_HARDWARE_PINS[port]
    return SoftwareSpi(
        pins["clock"], pins["mosi"], pins["miso"], pins["select"][device], pin_factory=pin_factory
    )
