"""Runs the real Satellite in this process with gpiozero's MockFactory, driving the button pin.

Usage: python -m tests.support.button_harness CONFIG  (run with the FIFO mic's env).
Prints "ready" once started; reads commands on stdin: "press" (drive the button pin low and
high again, like a finger) and "quit".
"""

from __future__ import annotations

import sys
from pathlib import Path

from gpiozero.pins.mock import MockFactory, MockPWMPin

from satellite.config import load_settings
from satellite.runtime.logs import setup_logging
from satellite.runtime.satellite import Satellite


def main() -> int:
    setup_logging()
    settings = load_settings(Path(sys.argv[1]))
    factory = MockFactory(pin_class=MockPWMPin)
    satellite = Satellite(settings, pin_factory=factory)
    satellite.start()
    print("ready", flush=True)
    try:
        for line in sys.stdin:
            if line.strip() == "press":
                pin = factory.pin(settings.button.pin)
                pin.drive_low()
                pin.drive_high()
                print("pressed", flush=True)
            elif line.strip() == "quit":
                break
    finally:
        satellite.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
