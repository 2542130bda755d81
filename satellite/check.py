"""`satellite check`: what is wrong with this room's satellite, one line per check, with fixes."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import queue
import ssl
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from satellite.config import (
    EX_CONFIG,
    AudioSettings,
    Settings,
    load_settings,
    read_toml,
    warn_insecure_files,
)
from satellite.config_doc import effective_values, toml_value, value_sources
from satellite.errors import ConfigError, SatelliteError
from satellite.topics import SatelliteTopic, Topics

if TYPE_CHECKING:  # numpy and paho load when a check needs them: `satellite --help` stays fast
    import paho.mqtt.client as mqtt
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

ETC_DIR = Path("/etc/satellite")
SYSTEMD_RUN_DIR = Path("/run/systemd/system")  # exists only when systemd is PID 1
LISTEN_S = 1.0  # the level meter's length
LED_STEP_S = 0.2  # each LED pattern shows this long: long enough to see, short in total
BROKER_TIMEOUT_S = 3.0
RETAINED_WAIT_S = 0.5  # a broker sends retained messages right after SUBACK
CLIPPED_LIMIT = 0.001  # above this share of clipped samples the gain is too high
_FULL_SCALE = 32768.0
_ACL_EXAMPLE = "firmware-config/mosquitto/acl.example"


@dataclass(frozen=True)
class Result:
    """One line of the report: `ok` True (✓), False (✗) or None (neutral, –)."""

    name: str
    ok: bool | None
    detail: str
    fix: str | None = None
    data: Mapping[str, Any] | None = field(default=None, compare=False)


def passed(name: str, detail: str, **data: Any) -> Result:
    """A ✓ line."""
    return Result(name, True, detail, None, data or None)


def failed(name: str, detail: str, fix: str, **data: Any) -> Result:
    """A ✗ line and how to fix it."""
    return Result(name, False, detail, fix, data or None)


def neutral(name: str, detail: str) -> Result:
    """A line that is neither good nor bad news (nothing to check here)."""
    return Result(name, None, detail)


# --- the command -------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`satellite check [--config FILE] [--json]` (-v before the command lists every value)."""
    parser.add_argument(
        "--config", type=Path, help=f"the room's TOML file (default: the only one in {ETC_DIR})"
    )
    parser.add_argument("--json", action="store_true", help="a JSON list instead of lines")


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run every check, printing each line as it completes; 1 when anything failed."""
    verbose = bool(getattr(args, "verbose", False))
    config = args.config if args.config is not None else default_config()
    report = None if args.json else TextReport(out, color=_color(out), verbose=verbose)
    results: list[Result] = []

    def emit(result: Result) -> None:
        results.append(result)
        if report is not None:
            report.show(result)

    with contextlib.ExitStack() as stack:
        if not verbose:  # each check reports its own failure; the daemon's log lines would not
            stack.enter_context(_silenced("satellite.audio", "satellite.assemble"))
        run_checks(config, os.environ, emit)
    if report is not None:
        report.summary(results)
    else:
        json.dump([asdict(result) for result in results], out, indent=2)
        out.write("\n")
    return 1 if any(result.ok is False for result in results) else 0


def run_checks(
    config: Path | None, environ: Mapping[str, str], emit: Callable[[Result], None]
) -> None:
    """Every check in order; after an invalid config only that line."""
    result, settings = check_config(config, environ)
    emit(result)
    if settings is None:
        return
    if config is not None:
        emit(check_permissions(settings, config))
    unit = check_unit(settings.room_id)
    emit(unit)
    for result in check_microphone(settings.audio, unit_running=unit.ok is True):
        emit(result)
    emit(check_models_installed(settings))
    emit(check_models_load(settings))
    for result in check_broker(settings):
        emit(result)
    emit(check_leds(settings))
    emit(check_button(settings))


def default_config(etc_dir: Path = ETC_DIR) -> Path | None:
    """The room file when `etc_dir` holds exactly one (one room per Pi is the usual case)."""
    found = sorted(etc_dir.glob("*.toml")) if etc_dir.is_dir() else []
    return found[0] if len(found) == 1 else None


# --- config ------------------------------------------------------------------------------------


def check_config(path: Path | None, environ: Mapping[str, str]) -> tuple[Result, Settings | None]:
    """The config loads; where each value came from (file, env, default) in `data`."""
    try:
        data = read_toml(path) if path is not None else {}
        settings = load_settings(path)
    except ConfigError as exc:
        fix = (
            f"correct it in {path}; every key is described in docs/configuration.md"
            if path is not None
            else f"pass --config {ETC_DIR}/ROOM.toml"
        )
        return failed("config", str(exc), fix), None
    sources = value_sources(data, environ)
    counts = Counter(source.split()[0] for source in sources.values())
    from_env = [f"{key} ({s[4:]})" for key, s in sources.items() if s.startswith("env ")]
    detail = (
        f"{path or 'environment only'}: room {settings.room_id}, satellite "
        f"{settings.satellite_id}; {counts['file']} keys from the file, "
        f"{counts['default']} defaults"
    )
    if from_env:
        detail += f", from the environment: {', '.join(from_env)}"
    return passed("config", detail, values=effective_values(settings, sources)), settings


def check_permissions(settings: Settings, config: Path) -> Result:
    """Other users of the host cannot read the config or the password file."""
    warnings = warn_insecure_files(settings, config)
    if not warnings:
        return passed("file permissions", "config and password files are private")
    detail, _, fix = warnings[0].rpartition("; ")
    more = f" (and {len(warnings) - 1} more)" if len(warnings) > 1 else ""
    return failed("file permissions", detail + more, fix)


# --- systemd -----------------------------------------------------------------------------------


def check_unit(
    room_id: str, *, run_dir: Path = SYSTEMD_RUN_DIR, systemctl: str = "systemctl"
) -> Result:
    """`systemctl is-active satellite@ROOM` when systemd runs this host."""
    if not run_dir.is_dir():
        return neutral("systemd unit", "not under systemd: no unit to check")
    unit = f"satellite@{room_id}.service"
    try:
        done = subprocess.run(
            [systemctl, "is-active", unit], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return failed("systemd unit", f"systemctl is-active {unit}: {exc}", "systemctl status")
    state = done.stdout.strip() or "unknown"
    if state == "active":
        return passed("systemd unit", f"{unit} is active")
    fixes = {
        "inactive": f"sudo systemctl enable --now {unit}",
        "failed": f"journalctl -u {unit} -e says why; then sudo systemctl restart {unit}",
    }
    return failed("systemd unit", f"{unit} is {state}", fixes.get(state, f"journalctl -u {unit}"))


# --- microphone --------------------------------------------------------------------------------


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

    samples = np.frombuffer(raw, dtype="<i2")[channel::channels].astype(np.float64)
    if not len(samples):
        return Level(0.0, -math.inf, -math.inf, 0, 0)
    peak = float(np.max(np.abs(samples)))
    rms = float(np.sqrt(np.mean(samples**2)))
    clipped = int(np.count_nonzero(np.abs(samples) >= _FULL_SCALE - 1))
    return Level(len(samples) / rate, _dbfs(peak), _dbfs(rms), clipped, len(samples))


def _dbfs(value: float) -> float:
    return 20 * math.log10(value / _FULL_SCALE) if value > 0 else -math.inf


def level_bar(dbfs: float, width: int = 20, floor: float = -60.0) -> str:
    """`[#######-------------]`: the level from `floor` dBFS to 0."""
    filled = 0 if dbfs <= floor else round(width * min(1.0, (dbfs - floor) / -floor))
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def check_microphone(
    audio: AudioSettings, *, unit_running: bool = False, seconds: float = LISTEN_S
) -> list[Result]:
    """The device opens at the configured rate and channels, and `seconds` of it measured."""
    from satellite.audio import Capture

    try:
        capture = Capture(audio)
    except SatelliteError as exc:
        return [failed("microphone", str(exc), "run install.sh (it installs pyaudio)")]
    with capture:
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


# --- models ------------------------------------------------------------------------------------


def check_models_installed(settings: Settings) -> Result:
    """Every model file is there and matches the sha256 recorded when it was installed."""
    from satellite.models import verify_models
    from satellite.models.paths import install_hint

    models_dir = settings.models.dir
    hint = install_hint(models_dir)
    problems = [problem.removesuffix(f"; {hint}") for problem in verify_models(models_dir)]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return failed("models installed", problems[0] + more, hint)
    return passed("models installed", f"{models_dir}: checksums match")


def check_models_load(settings: Settings) -> Result:
    """The configured wake models and the Vosk model load."""
    from satellite.assemble import build_machine
    from satellite.audio import native_stderr_silenced
    from satellite.models.paths import install_hint

    started = time.monotonic()
    hint = install_hint(settings.models.dir)
    try:
        with native_stderr_silenced():  # Kaldi logs every step of loading to fd 2
            build_machine(settings)
    except SatelliteError as exc:
        return failed("models load", str(exc).removesuffix(f"; {hint}"), hint)
    wake = ", ".join(settings.wake.models)
    took = time.monotonic() - started
    return passed("models load", f"wake {wake} and {settings.stt.model} in {took:.1f} s")


# --- broker ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Message:
    payload: bytes
    retain: bool
    at: float


class BrokerProbe:
    """One short-lived MQTT connection that reports what the broker answered, for `check`.

    Unlike MqttLink (which retries forever and only logs), it waits for each answer (CONNACK,
    SUBACK, PUBACK, a message) with a timeout and returns the broker's reason codes. MQTT 5,
    so a mosquitto 2 ACL refusal comes back in the PUBACK. paho runs the `_on_*` callbacks on
    its network thread; they only put events on `_events`, read by the checking thread.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        password: str | None,
        mqtt5: bool = True,
        timeout: float = BROKER_TIMEOUT_S,
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.settings = settings.mqtt
        self.mqtt5 = mqtt5
        self.timeout = timeout
        self.messages: list[_Message] = []
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        from satellite.assemble import client_id

        # Not the daemon's client id: the broker would disconnect the running satellite.
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id(settings) + "-check",
            protocol=mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311,
        )
        if self.settings.username is not None:
            self._client.username_pw_set(self.settings.username, password)
        if self.settings.tls:
            ca_file = self.settings.ca_file
            self._client.tls_set(ca_certs=None if ca_file is None else str(ca_file))
        self._client.connect_timeout = timeout
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_publish = self._on_publish
        self._client.on_message = self._on_message

    def connect(self) -> ReasonCode | None:
        """The CONNACK's reason code, None when none came; OSError when unreachable."""
        self._client.connect(self.settings.host, self.settings.port, keepalive=30)
        self._client.loop_start()
        code: ReasonCode | None = self._wait("connack")
        return code

    def subscribe(self, topic: str) -> ReasonCode | None:
        """The SUBACK's code for `topic` (retained messages keep their flag, MQTT 5)."""
        from paho.mqtt.subscribeoptions import SubscribeOptions

        if self.mqtt5:
            self._client.subscribe(topic, options=SubscribeOptions(qos=1, retainAsPublished=True))
        else:
            self._client.subscribe(topic, qos=1)
        codes: list[ReasonCode] | None = self._wait("suback")
        return codes[0] if codes else None

    def publish(self, topic: str, payload: bytes) -> ReasonCode | None:
        """Publish (QoS 1, not retained); the PUBACK's reason code (always success in 3.1.1)."""
        self._client.publish(topic, payload, qos=1, retain=False)
        code: ReasonCode | None = self._wait("puback")
        return code

    def message(self, match: Callable[[_Message], bool], timeout: float) -> _Message | None:
        """The first message so far or within `timeout` s that `match`es."""
        deadline = time.monotonic() + timeout
        while True:
            found = next((m for m in self.messages if match(m)), None)
            left = deadline - time.monotonic()
            if found is not None or left <= 0:
                return found
            self._next_event(left)

    def close(self) -> None:
        """Disconnect cleanly and stop paho's thread."""
        self._client.disconnect()
        self._client.loop_stop()

    def _wait(self, kind: str) -> Any:
        deadline = time.monotonic() + self.timeout
        while (left := deadline - time.monotonic()) > 0:
            event = self._next_event(left)
            if event is not None and event[0] == kind:
                return event[1]
        return None

    def _next_event(self, timeout: float) -> tuple[str, Any] | None:
        try:
            event = self._events.get(timeout=timeout)
        except queue.Empty:
            return None
        if event[0] == "message":
            self.messages.append(event[1])
        return event

    # paho's network thread:
    def _on_connect(
        self, _c: mqtt.Client, _u: Any, _f: Any, code: ReasonCode, _p: Properties | None
    ) -> None:
        self._events.put(("connack", code))

    def _on_subscribe(
        self, _c: mqtt.Client, _u: Any, _mid: int, codes: list[ReasonCode], _p: Any
    ) -> None:
        self._events.put(("suback", codes))

    def _on_publish(self, _c: mqtt.Client, _u: Any, _mid: int, code: ReasonCode, _p: Any) -> None:
        self._events.put(("puback", code))

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        message = _Message(bytes(msg.payload), bool(msg.retain), time.monotonic())
        self._events.put(("message", message))


_UNSUPPORTED_PROTOCOL = (1, 132)  # 3.1.1's and 5's CONNACK codes for "no MQTT 5 here"


def check_broker(settings: Settings, *, timeout: float = BROKER_TIMEOUT_S) -> list[Result]:
    """Reachable, the login accepted, and a round trip on this satellite's own status topic."""
    address = f"{settings.mqtt.host}:{settings.mqtt.port}"
    try:
        password = settings.mqtt.read_password()
        probe = BrokerProbe(settings, password=password, timeout=timeout)
    except (ConfigError, OSError, ValueError) as exc:
        return [failed("broker login", str(exc), "fix [mqtt] password_file / ca_file")]
    try:
        code = probe.connect()
        if code is not None and code.is_failure and code.value in _UNSUPPORTED_PROTOCOL:
            probe.close()
            probe = BrokerProbe(settings, password=password, mqtt5=False, timeout=timeout)
            code = probe.connect()
    except OSError as exc:
        return [_unreachable(address, exc)]
    try:
        results = [passed("broker reachable", f"{address} (MQTT {_version(probe)})")]
        login = _login_result(settings, code)
        results.append(login)
        if login.ok:
            results.append(_round_trip(settings, probe, timeout))
        return results
    finally:
        probe.close()


def _version(probe: BrokerProbe) -> str:
    return "5" if probe.mqtt5 else "3.1.1"


def _unreachable(address: str, exc: OSError) -> Result:
    if isinstance(exc, ssl.SSLError):
        fix = "check [mqtt] ca_file, and that the broker's certificate names [mqtt] host"
        return failed("broker reachable", f"TLS with {address} failed: {exc}", fix)
    fix = (
        "start the broker (systemctl status mosquitto) or correct [mqtt] host and port; "
        "a firewall may drop the port"
    )
    return failed("broker reachable", f"{address}: {exc.strerror or exc}", fix)


def _login_result(settings: Settings, code: ReasonCode | None) -> Result:
    user = settings.mqtt.username
    who = f"user {user!r}" if user else "anonymous"
    if code is None:
        fix = "is [mqtt] port an MQTT listener (and tls set as the listener wants)?"
        return failed("broker login", "no answer (CONNACK) to the connect", fix)
    if not code.is_failure:
        return passed("broker login", f"{who} accepted")
    if user is None:
        fix = "the broker wants a login: set [mqtt] username and password_file"
    else:
        fix = (
            f"check [mqtt] username and the password in {settings.mqtt.password_file}; "
            f"on the broker: mosquitto_passwd <password file> {user}"
        )
    return failed("broker login", f"{who} refused: {code}", fix)


def _round_trip(settings: Settings, probe: BrokerProbe, timeout: float) -> Result:
    """Read back our own publish on the status topic.

    What is published: a non-retained copy of the retained status when there is one, so a
    dashboard sees the same status again and the retained one is untouched; else a
    `{"check": true}` object, which is no valid status and so ignored by validating readers.
    """
    topics = Topics(
        room_id=settings.room_id, satellite_id=settings.satellite_id, mqtt=settings.mqtt
    )
    topic = topics.satellite(SatelliteTopic.STATUS)[0]
    user = settings.mqtt.username or "(anonymous)"
    fix = (
        f"in the broker's acl_file, give user {user} `topic readwrite {topic}` "
        f"(see {_ACL_EXAMPLE}) and reload the broker"
    )
    name = "broker round trip"
    code = probe.subscribe(topic)
    if code is None or code.is_failure:
        return failed(name, f"ACL denied: subscribing to {topic} refused ({code})", fix)
    retained = probe.message(lambda m: m.retain, RETAINED_WAIT_S)
    payload = retained.payload if retained else _check_payload(settings)
    sent = time.monotonic()
    code = probe.publish(topic, payload)
    if code is not None and code.is_failure:
        return failed(name, f"ACL denied: publishing to {topic} refused ({code})", fix)
    echo = probe.message(lambda m: m.at >= sent and not m.retain and m.payload == payload, timeout)
    if echo is None:
        accepted = probe.mqtt5 and code is not None
        why = f"the ACL lets {user} write it but not read it?" if accepted else "ACL?"
        detail = f"publish to {topic} not delivered back within {timeout:g} s: {why}"
        return failed(name, detail, fix)
    took = round((echo.at - sent) * 1000)
    return passed(name, f"published to {topic} and read it back in {took} ms", topic=topic)


def _check_payload(settings: Settings) -> bytes:
    body = {"check": True, "satellite_id": settings.satellite_id, "timestamp": time.time_ns()}
    return json.dumps(body).encode()


# --- LEDs and button ---------------------------------------------------------------------------

_GPIO_FIX = (
    "on a Pi: enable SPI (dtparam=spi=on) and put the user in the gpio and spi groups; "
    'without LEDs: [leds] hat = "none"'
)


def check_leds(settings: Settings, *, step_s: float = LED_STEP_S) -> Result:
    """Every LED pattern shows briefly, then idle."""
    from satellite.leds import build_leds, cycle_patterns, resolve_leds

    try:
        if resolve_leds(settings.leds).driver == "none":
            return passed("LEDs", f"none configured (hat {settings.leds.hat!r})")
        animator = build_leds(settings.leds)
    except ConfigError as exc:
        return failed("LEDs", str(exc), _GPIO_FIX)
    try:
        shown = cycle_patterns(animator, step_s, lambda _name: None)
    finally:
        animator.close()
    return passed("LEDs", f"hat {settings.leds.hat!r}: {len(shown)} patterns shown, then idle")


def check_button(settings: Settings) -> Result:
    """The mute button's pin reads, and whether it is held down now."""
    from gpiozero import GPIOZeroError

    from satellite.button import MuteButton
    from satellite.leds import resolve_button

    try:
        button = resolve_button(settings.leds, settings.button)
    except ConfigError as exc:
        return failed("button", str(exc), _GPIO_FIX)
    if not button.enabled:
        return passed("button", "none configured")
    try:
        with MuteButton(
            pin=button.pin, pull_up=button.pull_up, bounce_s=button.bounce_s, on_press=_ignore
        ) as mute:
            pressed = mute.pressed
    except GPIOZeroError as exc:
        return failed("button", f"GPIO{button.pin}: {exc}", _GPIO_FIX)
    if pressed:
        return passed("button", f"GPIO{button.pin} reads pressed (if nobody holds it: pull_up?)")
    return passed("button", f"GPIO{button.pin} reads released")


def _ignore() -> None:
    """A press during the check changes nothing."""


# --- output ------------------------------------------------------------------------------------

_MARKS = {True: ("✓", "\033[32m"), False: ("✗", "\033[31m"), None: ("–", "\033[2m")}
_RESET = "\033[0m"


class TextReport:
    """One line per check (✓ ✗ –), a fix line under each ✗, and a summary."""

    def __init__(self, out: TextIO, *, color: bool, verbose: bool) -> None:
        self.out = out
        self.color = color
        self.verbose = verbose

    def show(self, result: Result) -> None:
        """Print `result` now (a check can take a second: the user sees progress)."""
        mark = self._paint(result.ok, _MARKS[result.ok][0])
        print(f"{mark} {result.name:<18} {result.detail}", file=self.out)
        if result.fix:
            print(f"  {'':<18} fix: {result.fix}", file=self.out)
        if self.verbose and result.data and "values" in result.data:
            for key, value in result.data["values"].items():
                shown = "unset" if value["value"] is None else toml_value(value["value"])
                print(f"      {key} = {shown}  ({value['source']})", file=self.out)
        self.out.flush()

    def summary(self, results: Sequence[Result]) -> None:
        """The last line: how many failed."""
        bad = sum(result.ok is False for result in results)
        line = f"{bad} of {len(results)} checks failed" if bad else "all checks passed"
        print(self._paint(not bad, line), file=self.out)

    def _paint(self, ok: bool | None, text: str) -> str:
        return f"{_MARKS[ok][1]}{text}{_RESET}" if self.color else text


def _color(out: TextIO) -> bool:
    return out.isatty() and "NO_COLOR" not in os.environ


@contextlib.contextmanager
def _silenced(*names: str) -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m satellite.check`, until the lead wires `satellite check` into cli.py."""
    from satellite.logs import setup_logging

    parser = argparse.ArgumentParser(prog="satellite check", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="list every value")
    add_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging(verbose=args.verbose)
    try:
        return run(args, sys.stdout)
    except ConfigError as exc:
        print(f"satellite: config error: {exc}", file=sys.stderr)
        return EX_CONFIG


if __name__ == "__main__":
    sys.exit(main())
