"""PortAudio's side of the microphone: importing pyaudio, listing and picking capture devices."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from satellite.errors import AudioError


def import_pyaudio() -> Any:
    """The pyaudio module, imported only when a microphone is used; AudioError without it."""
    try:
        import pyaudio
    except ImportError as exc:
        raise AudioError("pyaudio is not installed: run install.sh") from exc
    return pyaudio


@dataclass(frozen=True)
class InputDevice:
    """A capture device as PortAudio lists it."""

    index: int
    name: str
    channels: int
    default_rate: int


def list_inputs(pa: Any) -> list[InputDevice]:
    """Every device that can capture, in PortAudio's order."""
    devices = []
    for index in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(index)
        if int(info["maxInputChannels"]) > 0:
            devices.append(
                InputDevice(
                    index,
                    str(info["name"]),
                    int(info["maxInputChannels"]),
                    int(info["defaultSampleRate"]),
                )
            )
    return devices


def pick_device(devices: list[InputDevice], spec: str) -> InputDevice:
    """The device `spec` names: an index, an exact name, or a unique-enough substring."""
    if spec.isdigit():
        for device in devices:
            if device.index == int(spec):
                return device
    for device in devices:
        if device.name == spec:
            return device
    for device in devices:
        if spec.lower() in device.name.lower():
            return device
    names = ", ".join(f"{d.index}: {d.name}" for d in devices) or "none"
    raise AudioError(f"no capture device matches {spec!r} (capture devices: {names})")
