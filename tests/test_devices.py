"""`satellite devices` on the FIFO microphone, and the table with a fake PyAudio."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest

from satellite.commands.devices import DeviceReport, probe_devices, render
from satellite.config import AudioSettings
from tests.support.fifo_mic import FifoMic
from tests.support.satellite_proc import ROOT, room_config


def devices(mic: FifoMic, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "satellite", "devices", *args],
        cwd=ROOT,
        env=mic.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.integration
def test_lists_the_fifo_mic_with_its_rates_and_marks_it(tmp_path: Path, fifo_mic: FifoMic) -> None:
    config = room_config(tmp_path / "salon.toml", port=1883)
    done = devices(fifo_mic, "--config", str(config))
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if "fifomic" in line.split())
    assert row.startswith("* ")
    index, name, channels, *rates = row[2:].split()
    assert (name, index.isdigit(), int(channels) >= 1) == ("fifomic", True, True)
    assert rates == ["8000", "16000", "22050", "32000", "44100", "48000"]
    assert done.stdout.splitlines()[-1] == "* [audio] device = 'fifomic': opened at 16000 Hz"
    assert done.stderr == ""  # alsa-lib's probing noise stays hidden


@pytest.mark.integration
def test_a_device_name_that_matches_nothing_exits_1(tmp_path: Path, fifo_mic: FifoMic) -> None:
    config = room_config(tmp_path / "salon.toml", port=1883, audio={"device": "nosuchmic"})
    done = devices(fifo_mic, "--config", str(config))
    assert done.returncode == 1
    assert "* none: no device matches [audio] device = 'nosuchmic'" in done.stdout
    assert not any(line.startswith("* ") and "fifomic" in line for line in done.stdout.splitlines())


class FakePyAudio:
    """Two capture devices and an output-only one; the USB mic takes 44.1 and 48 kHz only."""

    paInt16 = 8  # noqa: N815  # the pyaudio module's name
    DEVICES: ClassVar[tuple[dict[str, Any], ...]] = (
        {"name": "seeed-2mic-voicecard: (hw:1,0)", "maxInputChannels": 2, "rate": 48000},
        {"name": "hdmi", "maxInputChannels": 0, "rate": 48000},
        {"name": "USB Mic: Audio (hw:2,0)", "maxInputChannels": 1, "rate": 44100},
    )
    RATES: ClassVar[dict[int, set[int]]] = {0: {8000, 16000, 48000}, 2: {44100, 48000}}

    def PyAudio(self) -> FakePyAudio:  # noqa: N802  # the pyaudio module's name
        return self

    def get_device_count(self) -> int:
        return len(self.DEVICES)

    def get_device_info_by_index(self, index: int) -> dict[str, Any]:
        info = self.DEVICES[index]
        return {**info, "defaultSampleRate": float(info["rate"])}

    def is_format_supported(self, rate: int, **kwargs: int) -> bool:
        index, channels = kwargs["input_device"], kwargs["input_channels"]
        if rate not in self.RATES[index] or channels > self.DEVICES[index]["maxInputChannels"]:
            raise ValueError("Invalid sample rate")
        return True

    def terminate(self) -> None:
        pass


def test_probes_rates_per_device_with_the_configured_channels() -> None:
    mono = probe_devices(1, pyaudio_module=FakePyAudio())
    assert [(d.index, d.rates) for d in mono] == [(0, (8000, 16000, 48000)), (2, (44100, 48000))]
    stereo = probe_devices(2, pyaudio_module=FakePyAudio())
    assert [d.rates for d in stereo] == [(8000, 16000, 48000), ()]


def test_marks_the_pick_and_the_rate_it_opens_at() -> None:
    reports = probe_devices(1, pyaudio_module=FakePyAudio())
    out = io.StringIO()
    assert render(reports, AudioSettings(device="usb"), out)
    lines = out.getvalue().splitlines()
    assert lines[1].startswith("      0  seeed-2mic-voicecard")
    assert lines[2].startswith("*     2  USB Mic: Audio (hw:2,0)")
    assert lines[-1] == "* [audio] device = 'usb': opened at 44100 Hz, resampled to 16000 Hz"


def test_no_devices_says_what_to_check() -> None:
    out = io.StringIO()
    assert not render([], AudioSettings(), out)
    assert "no capture devices" in out.getvalue()
    report = DeviceReport(3, "x", 1, 16000, ())
    assert not render([report], AudioSettings(device="y"), io.StringIO())
