"""`satellite check`: what is wrong with this room's satellite, one line per check, with fixes."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import pwd
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TextIO

from satellite.commands.checks import (
    Result,
    check_broker,
    failed,
    neutral,
    passed,
    probe_microphone,
)
from satellite.commands.config_doc import effective_values, toml_value, value_sources
from satellite.config import (
    Settings,
    load_settings,
    read_toml,
    warn_insecure_files,
)
from satellite.errors import AccessoryError, ConfigError, SatelliteError

ETC_DIR = Path("/etc/satellite")
SYSTEMD_RUN_DIR = Path("/run/systemd/system")  # exists only when systemd is PID 1
LED_STEP_S = 0.2  # each LED pattern shows this long: long enough to see, short in total


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
            stack.enter_context(
                _silenced(
                    "satellite.audio.capture",
                    "satellite.runtime.engines",
                    "satellite.runtime.mute_store",
                )
            )
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
    emit(check_mute_state(settings))
    for result in probe_microphone(settings.audio, unit_running=unit.ok is True):
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


# --- mute state --------------------------------------------------------------------------------


def check_mute_state(settings: Settings) -> Result:
    """The saved mute state reads, and the state directory takes an atomic, fsynced write."""
    from satellite.runtime.mute_store import MuteStore, mute_file, state_dir_fix

    state_dir = settings.state_dir
    if not state_dir.exists():
        return neutral("mute state", f"{state_dir} does not exist yet (the first mute makes it)")
    path = mute_file(state_dir, settings.room_id)
    store = MuteStore(path)
    muted = store.load()
    if store.problem is not None:
        fix = f"unmute by command or the button (which rewrites it), or delete {path}"
        return failed("mute state", store.problem, fix)
    user = pwd.getpwuid(os.geteuid()).pw_name
    probe = MuteStore(path.with_name(f".{path.name}.check"))
    try:
        probe.write(b"{}")
    except OSError as exc:
        detail = f"{user} cannot save it in {state_dir}: {exc.strerror or exc}"
        return failed("mute state", detail, state_dir_fix(state_dir, exc))
    finally:
        with contextlib.suppress(OSError):
            probe.path.unlink()
    saved = ("muted" if muted else "unmuted") if path.exists() else "none saved (unmuted)"
    return passed("mute state", f"{path}: {saved}; {user} can save it (atomic, fsynced)")


# --- models ------------------------------------------------------------------------------------


def check_models_installed(settings: Settings) -> Result:
    """Every model file is there and matches the sha256 recorded when it was installed."""
    from satellite.modelfiles import verify_models
    from satellite.modelfiles.paths import install_hint

    models_dir = settings.models.dir
    hint = install_hint(models_dir)
    problems = [problem.removesuffix(f"; {hint}") for problem in verify_models(models_dir)]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return failed("models installed", problems[0] + more, hint)
    return passed("models installed", f"{models_dir}: checksums match")


def check_models_load(settings: Settings) -> Result:
    """The configured wake models and the Vosk model load."""
    from satellite.audio.health import native_stderr_silenced
    from satellite.modelfiles.paths import install_hint
    from satellite.runtime.engines import build_machine

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


# --- LEDs and button ---------------------------------------------------------------------------

_GPIO_FIX = (
    "on a Pi: enable SPI (dtparam=spi=on) and put the user in the gpio and spi groups; "
    'without LEDs: [leds] hat = "none"'
)


def check_leds(settings: Settings, *, step_s: float = LED_STEP_S) -> Result:
    """Every LED pattern shows briefly, then idle."""
    from satellite.leds import backend_of, build_leds, cycle_patterns, resolve_leds

    try:
        if resolve_leds(settings.leds).driver == "none":
            return passed("LEDs", f"none configured (hat {settings.leds.hat!r})")
        animator = build_leds(settings.leds)
    except (ConfigError, AccessoryError) as exc:
        return failed("LEDs", str(exc), _GPIO_FIX)
    try:
        backend = backend_of(animator.driver)
        shown = cycle_patterns(animator, step_s, lambda _name: None)
    finally:
        animator.close()
    leds = resolve_leds(settings.leds)
    spi = (
        f", SPI {backend.spi} on /dev/spidev{leds.spi_port}.{leds.spi_device}"
        if backend.spi
        else ""
    )
    detail = f"hat {settings.leds.hat!r} on {backend.factory}{spi}: {len(shown)} patterns shown"
    if backend.fallback is not None:
        return failed("LEDs", detail, backend.fallback, factory=backend.factory, spi=backend.spi)
    return passed("LEDs", detail + ", then idle", factory=backend.factory, spi=backend.spi)


def check_button(settings: Settings) -> Result:
    """The mute button's pin reads, and whether it is held down now."""
    from satellite.leds import resolve_button
    from satellite.leds.button import MuteButton

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
    except AccessoryError as exc:
        return failed("button", str(exc), _GPIO_FIX)
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
