"""`satellite devices`: the capture devices, their channels and rates, and the one in use."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from satellite.audio.portaudio import InputDevice, import_pyaudio, list_inputs, pick_device
from satellite.config import AudioSettings, load_settings
from satellite.errors import AudioError

PROBE_RATES = (8000, 16000, 22050, 32000, 44100, 48000)


@dataclass(frozen=True)
class DeviceReport:
    """One capture device and the probed rates it accepts (16-bit, the configured channels)."""

    index: int
    name: str
    channels: int
    default_rate: int
    rates: tuple[int, ...]


def probe_devices(
    channels: int, *, rates: Sequence[int] = PROBE_RATES, pyaudio_module: Any = None
) -> list[DeviceReport]:
    """Every capture device PortAudio lists, with the `rates` it opens at with `channels`."""
    from satellite.audio.health import native_stderr_silenced

    pyaudio = pyaudio_module or import_pyaudio()
    # alsa-lib prints a line for every card and rate it cannot do: not news here.
    with native_stderr_silenced():
        pa = pyaudio.PyAudio()
        try:
            return [
                DeviceReport(
                    device.index,
                    device.name,
                    device.channels,
                    device.default_rate,
                    tuple(r for r in rates if _accepts(pa, pyaudio, device.index, r, channels)),
                )
                for device in list_inputs(pa)
            ]
        finally:
            pa.terminate()


def _accepts(pa: Any, pyaudio: Any, index: int, rate: int, channels: int) -> bool:
    try:
        return bool(
            pa.is_format_supported(
                rate, input_device=index, input_channels=channels, input_format=pyaudio.paInt16
            )
        )
    except ValueError:  # PyAudio's way of saying "not supported"
        return False


def picked(reports: Sequence[DeviceReport], audio: AudioSettings) -> DeviceReport | None:
    """The device `audio.device` names, as the satellite would pick it."""
    inputs = [InputDevice(r.index, r.name, r.channels, r.default_rate) for r in reports]
    try:
        chosen = pick_device(inputs, audio.device)
    except AudioError:
        return None
    return next(r for r in reports if r.index == chosen.index)


def opening_rate(report: DeviceReport, audio: AudioSettings) -> int:
    """The rate the satellite opens it at: the configured one, else 16 kHz, else its default."""
    from satellite.core.frames import SAMPLE_RATE

    if audio.rate is not None:
        return audio.rate
    return SAMPLE_RATE if SAMPLE_RATE in report.rates else report.default_rate


def render(reports: Sequence[DeviceReport], audio: AudioSettings, out: TextIO) -> bool:
    """The table, with `*` on the device the config picks; whether it picks one."""
    chosen = picked(reports, audio)
    name_width = max([len(r.name) for r in reports] + [4])
    probed = f"rates (Hz) at 16 bits, {audio.channels} channel(s)"
    print(f"  {'index':>5}  {'name':<{name_width}}  {'ch':>3}  {probed}", file=out)
    for report in reports:
        mark = "*" if report is chosen else " "
        rates = " ".join(str(rate) for rate in report.rates) or "none"
        line = (
            f"{mark} {report.index:>5}  {report.name:<{name_width}}  {report.channels:>3}  {rates}"
        )
        print(line, file=out)
    if not reports:
        print("no capture devices: is the microphone plugged in (arecord -l)?", file=out)
    if chosen is None:
        print(f"* none: no device matches [audio] device = {audio.device!r}", file=out)
        return False
    from satellite.core.frames import SAMPLE_RATE

    rate = opening_rate(chosen, audio)
    resampled = "" if rate == SAMPLE_RATE else f", resampled to {SAMPLE_RATE} Hz"
    print(f"* [audio] device = {audio.device!r}: opened at {rate} Hz{resampled}", file=out)
    return True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`satellite devices [--config FILE]`."""
    parser.add_argument(
        "--config", type=Path, help="the room's TOML file, to mark the device it picks"
    )


def run(args: argparse.Namespace, out: TextIO) -> int:
    """List the devices; 1 when a config names a device that is not among them."""
    from satellite.commands.check import default_config

    config = args.config if args.config is not None else default_config()
    audio = load_settings(config).audio if config is not None else AudioSettings()
    found = render(probe_devices(audio.channels), audio, out)
    return 0 if found or config is None else 1
