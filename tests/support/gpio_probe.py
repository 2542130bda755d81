"""Which pin factory gpiozero picks by itself in this Python: run as a script, prints JSON.

Run with a venv's python and GPIOZERO_PIN_FACTORY unset. It imports the GPIO backends the way
gpiozero does and asks gpiozero for its default factory, recording every fallback it warns
about: on a machine whose /proc/cpuinfo says Raspberry Pi but that has no /dev/gpiochip*, the
first attempt must be lgpio and it must fail only at opening the chip.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from typing import Any


def _module(name: str) -> dict[str, Any]:
    try:
        module = __import__(name)
    except ImportError as exc:
        return {"ok": False, "error": str(exc)}
    return {"ok": True, "file": getattr(module, "__file__", None)}


def probe() -> dict[str, Any]:
    """The backends' import results and gpiozero's choice."""
    from gpiozero import Device

    report: dict[str, Any] = {
        "env": os.environ.get("GPIOZERO_PIN_FACTORY"),
        "lgpio": _module("lgpio"),
        "spidev": _module("spidev"),
    }
    if report["lgpio"]["ok"]:
        import lgpio

        # The PyPI placeholder lgpio 0.0.0.2 imports fine and is empty.
        report["lgpio"]["real"] = hasattr(lgpio, "gpiochip_open")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            factory = Device._default_pin_factory()
        except Exception as exc:
            report["factory"] = None
            report["error"] = f"{type(exc).__name__}: {exc}"
        else:
            report["factory"] = type(factory).__name__
            factory.close()
    report["fallbacks"] = [str(w.message) for w in caught]
    return report


if __name__ == "__main__":
    json.dump(probe(), sys.stdout)
    sys.stdout.write("\n")
