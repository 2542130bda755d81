"""The microphone check: the device opens as configured, and a second of it measured."""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from satellite.commands.checks.bounded import Child
from satellite.commands.checks.result import Result, failed, neutral, passed
from satellite.config import AudioSettings
from satellite.errors import SatelliteError
from satellite.runtime.logs import FORMAT

LISTEN_S = 1.0  # the level meter's length
OPEN_TIMEOUT_S = 5.0  # PortAudio's scan and the open take well under a second when well
START_TIMEOUT_S = 30.0  # the probe process importing numpy and pyaudio, on a slow Pi
_CLOSE_S = 4.0  # after the level meter: its last read, and closing the device
_PREFIX = "@mic-probe "
_CHILD = "from satellite.commands.checks.microphone import probe_child; probe_child()"
_HANG_FIX = (
    "replug the microphone or reboot; `fuser -v /dev/snd/*` names programs holding sound "
    "devices, and `arecord -D <device> -d 2 test.wav` shows the same hang (Ctrl-C ends it)"
)
CLIPPED_LIMIT = 0.001  # above this share of clipped samples the gain is too high
_FULL_SCALE = 32768.0


@dataclass(frozen=True)
class Level:
    """What a stretch of audio measured: peak and RMS in dBFS (-inf for silence), clipping."""

    seconds: float
    peak_dbfs: float
    rms_dbfs: float
    clipped: int
    samples: int


def measure_level(raw: bytes, *, rate: int, channels: int, channel: int) -> Level:
    """The level of one channel of interleaved int16 audio."""
    import numpy as np

    from satellite.core.frames import amplitude_dbfs  # numpy: not for `satellite check --help`

    samples = np.frombuffer(raw, dtype="<i2")[channel::channels].astype(np.float64)
    if not len(samples):
        return Level(0.0, -math.inf, -math.inf, 0, 0)
    peak = float(np.max(np.abs(samples)))
    rms = float(np.sqrt(np.mean(samples**2)))
    clipped = int(np.count_nonzero(np.abs(samples) >= _FULL_SCALE - 1))
    peak_dbfs, rms_dbfs = amplitude_dbfs(peak), amplitude_dbfs(rms)
    return Level(len(samples) / rate, peak_dbfs, rms_dbfs, clipped, len(samples))


def level_bar(dbfs: float, width: int = 20, floor: float = -60.0) -> str:
    """`[#######-------------]`: the level from `floor` dBFS to 0."""
    filled = 0 if dbfs <= floor else round(width * min(1.0, (dbfs - floor) / -floor))
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def probe_microphone(
    audio: AudioSettings,
    *,
    unit_running: bool = False,
    seconds: float = LISTEN_S,
    open_timeout: float = OPEN_TIMEOUT_S,
) -> list[Result]:
    """`check_microphone` in a child process, killed when the device has not opened within
    `open_timeout` s: an open blocked in the kernel or in alsa-lib cannot be interrupted, and
    an abandoned thread would keep PortAudio's global state and fd 2 redirected for the scan."""
    request = {
        "audio": audio.model_dump(mode="json"),
        "unit_running": unit_running,
        "seconds": seconds,
        "log_level": logging.getLogger("satellite.audio.capture").getEffectiveLevel(),
    }
    with Child(_CHILD, stdin=json.dumps(request), prefix=_PREFIX) as child:
        started = child.line(START_TIMEOUT_S)
        if started != "opening":
            return [_probe_broken(started, child.proc.poll())]
        opened = child.line(open_timeout)
        if opened is None:
            detail = (
                f"{audio.device!r} did not open within {open_timeout:g} s (its open, or "
                "PortAudio's scan of the sound devices, blocks)"
            )
            return [failed("microphone", detail, _HANG_FIX, waited_s=open_timeout)]
        done = child.line(seconds + _CLOSE_S) if opened == "listening" else opened
        if not done or not done.startswith("results "):
            return [_probe_broken(done, child.proc.poll())]
        return [Result(**result) for result in json.loads(done.removeprefix("results "))]


def _probe_broken(line: str | None, status: int | None) -> Result:
    if line is None:
        why = "the microphone probe did not answer in time (the system is overloaded?)"
    else:
        why = f"the microphone probe ended without a result (exit status {status})"
    return failed("microphone", why, _MIC_FIX)


def probe_child() -> None:
    """The child side of `probe_microphone`: a request on stdin, answers on stdout."""
    request = json.load(sys.stdin)
    if request["log_level"] < logging.CRITICAL:
        logging.basicConfig(level=request["log_level"], format=FORMAT)
    else:
        logging.disable(logging.CRITICAL)  # the parent reports the failure, not the log

    def say(line: str) -> None:
        print(_PREFIX + line, flush=True)

    results = check_microphone(
        AudioSettings.model_validate(request["audio"]),
        unit_running=request["unit_running"],
        seconds=request["seconds"],
        on_phase=say,
    )
    say("results " + json.dumps([asdict(result) for result in results]))


def check_microphone(
    audio: AudioSettings,
    *,
    unit_running: bool = False,
    seconds: float = LISTEN_S,
    on_phase: Callable[[str], None] = lambda phase: None,
) -> list[Result]:
    """The device opens at the configured rate and channels, and `seconds` of it measured.

    `on_phase("opening")` comes just before the device is opened, `on_phase("listening")`
    once it opened."""
    from satellite.audio.capture import Capture

    try:
        capture = Capture(audio)
    except SatelliteError as exc:
        return [failed("microphone", str(exc), "run install.sh (it installs pyaudio)")]
    on_phase("opening")
    with capture:
        on_phase("listening")
        if capture.fault is not None or capture.device is None:
            return [_microphone_failure(capture.fault or "not opened", unit_running)]
        device, rate = capture.device, capture.rate
        opened = passed(
            "microphone",
            f"{device.name!r} (index {device.index}) at {rate} Hz, {audio.channels} channel(s)",
            device=device.name,
            index=device.index,
            rate=rate,
            channels=audio.channels,
        )
        raw = _record(capture, seconds, bytes_per_s=rate * audio.channels * 2)
        fault = capture.fault
    if fault is not None:
        return [opened, failed("audio level", fault, _MIC_FIX)]
    level = measure_level(raw, rate=rate, channels=audio.channels, channel=audio.channel)
    return [opened, _level_result(level, seconds)]


_MIC_FIX = "check the device with `arecord -D <device> -d 2 test.wav` and `satellite devices`"


def _microphone_failure(fault: str, unit_running: bool) -> Result:
    if "busy" in fault:
        if unit_running:
            return neutral("microphone", f"in use by the running satellite ({fault})")
        return failed(
            "microphone", fault, "stop the program that holds it (`fuser -v /dev/snd/*` names it)"
        )
    if "no capture device matches" in fault:
        fix = "set [audio] device to a name or index that `satellite devices` lists"
    elif " Hz" in fault:
        fix = (
            "use a rate and channel count `satellite devices` shows for it ([audio] rate, channels)"
        )
    else:
        fix = _MIC_FIX
    return failed("microphone", fault, fix)


def _record(capture: Any, seconds: float, *, bytes_per_s: int) -> bytes:
    wanted = int(seconds * bytes_per_s)
    deadline = time.monotonic() + seconds + 1.0
    chunks: list[bytes] = []
    got = 0
    while got < wanted and (left := deadline - time.monotonic()) > 0:
        chunk = capture.read(min(left, 0.25))
        if chunk:
            chunks.append(chunk)
            got += len(chunk)
    return b"".join(chunks)


def _level_result(level: Level, seconds: float) -> Result:
    data = {
        "seconds": round(level.seconds, 2),
        "peak_dbfs": _finite(level.peak_dbfs),
        "rms_dbfs": _finite(level.rms_dbfs),
        "clipped": level.clipped,
    }
    if level.samples == 0:
        fix = "the device opened but sends nothing: " + _MIC_FIX
        return failed("audio level", f"no audio within {seconds + 1:g} s", fix, **data)
    detail = (
        f"peak {level.peak_dbfs:.1f} dBFS {level_bar(level.peak_dbfs)} rms "
        f"{level.rms_dbfs:.1f} dBFS, {level.clipped} clipped in {level.seconds:.1f} s"
    )
    if level.clipped > CLIPPED_LIMIT * level.samples:
        return failed("audio level", detail, "lower the capture gain (alsamixer, F4)", **data)
    if level.peak_dbfs == -math.inf:
        detail += " (all zeros: capture muted, or the wrong [audio] channel?)"
    return passed("audio level", detail, **data)


def _finite(value: float) -> float | None:
    return round(value, 1) if math.isfinite(value) else None
