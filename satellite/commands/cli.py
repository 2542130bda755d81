"""The `satellite` command: run, simulate, models install, schema."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from satellite import __version__
from satellite.errors import ConfigError, SatelliteError
from satellite.runtime.logs import setup_logging

if TYPE_CHECKING:
    from satellite.config import Settings

EX_FAILURE = 1
EX_CONFIG = 78  # satellite.config's, repeated so `--help` need not import pydantic

# Commands whose module adds its own arguments and runs it: imported only when that command
# is the one given, so `satellite --help` or `satellite run` never load numpy, rich, etc.
_TOOLS: dict[str, tuple[str, str]] = {
    "check": ("satellite.commands.check", "what is wrong and how to fix it"),
    "devices": ("satellite.commands.devices", "capture devices and their rates"),
    "config": ("satellite.commands.config_doc", "the config in effect (--show)"),
    "listen": ("satellite.commands.listen", "live level, wake scores, transcripts"),
}


def _output(default: object = False) -> argparse.ArgumentParser:
    """-v/-q, accepted before the command and after it, with the same meaning everywhere."""
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument(
        "-v", "--verbose", action="store_true", default=default, help="debug logging"
    )
    flags.add_argument(
        "-q", "--quiet", action="store_true", default=default, help="warnings and errors only"
    )
    return flags


class _Commands:
    """Adds subcommands that also take -v/-q (without resetting them when given earlier)."""

    def __init__(self, actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        self._actions = actions

    def add_parser(self, name: str, *, help: str) -> argparse.ArgumentParser:
        return self._actions.add_parser(name, help=help, parents=[_output(argparse.SUPPRESS)])


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; only `command`'s tool module (if any) is imported for it."""
    parser = argparse.ArgumentParser(prog="satellite", description=__doc__, parents=[_output()])
    parser.add_argument("--version", action="version", version=f"satellite {__version__}")
    commands = _Commands(parser.add_subparsers(dest="command", required=True))

    run = commands.add_parser("run", help="run the satellite for one room")
    run.add_argument("--config", type=Path, required=True, help="the room's TOML file")

    sim = commands.add_parser("simulate", help="run the pipeline on WAV files, print events")
    sim.add_argument("--config", type=Path, required=True)
    sim.add_argument("wavs", type=Path, nargs="+", metavar="WAV")
    sim.add_argument("--publish", action="store_true", help="also publish to the broker")

    models = commands.add_parser("models", help="manage models")
    models_cmd = _Commands(models.add_subparsers(dest="models_command", required=True))
    install = models_cmd.add_parser("install", help="fetch, check and unpack the models")
    install.add_argument("--dir", type=Path, help="models directory (default: from config)")
    install.add_argument("--config", type=Path, help="room config to read models.dir from")

    led = commands.add_parser("led-test", help="cycle every LED pattern on the configured LEDs")
    led.add_argument("--config", type=Path, required=True)
    led.add_argument("--seconds", type=float, default=2.0, help="how long each pattern shows")

    reload = commands.add_parser(
        "reload", help="make a running satellite re-read its config and wait until it did"
    )
    reload.add_argument("--pid", type=int, required=True, help="the daemon's process id")
    reload.add_argument(
        "--record",
        type=Path,
        help="its reload record (default: $RUNTIME_DIRECTORY/reload, as systemd sets it)",
    )
    reload.add_argument("--timeout", type=float, default=80.0, help="seconds to wait")

    for name, (module, text) in _TOOLS.items():
        tool = commands.add_parser(name, help=text)
        if name == command:
            importlib.import_module(module).add_arguments(tool)

    schema = commands.add_parser("schema", help="write the JSON Schemas of every payload")
    schema.add_argument("--out", type=Path, required=True, help="output directory")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser(_command_in(argv)).parse_args(argv)
    setup_logging(verbose=args.verbose, quiet=args.quiet)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"satellite: config error: {exc}", file=sys.stderr)
        return EX_CONFIG
    except SatelliteError as exc:
        print(f"satellite: {exc}", file=sys.stderr)
        return EX_FAILURE
    except KeyboardInterrupt:
        return 130


def _command_in(argv: Sequence[str]) -> str | None:
    """The command word: the first argument that is not an option (top-level ones take none)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command in _TOOLS:
        tool = importlib.import_module(_TOOLS[args.command][0])
        run: Callable[[argparse.Namespace, TextIO], int] = tool.run
        return run(args, sys.stdout)
    from satellite.config import load_settings

    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "run": lambda a: _run(a.config, verbose=a.verbose, quiet=a.quiet),
        "simulate": lambda a: _simulate(load_settings(a.config), a.wavs, publish=a.publish),
        "models": lambda a: _models_install(a.dir, a.config, quiet=a.quiet),
        "led-test": lambda a: _led_test(load_settings(a.config), a.seconds),
        "reload": lambda a: _reload(a.pid, a.record or _reload_record(), a.timeout),
        "schema": _schema,
    }
    return commands[args.command](args)


def _schema(args: argparse.Namespace) -> int:
    from satellite.mqtt.schemas import write_schemas

    for path in write_schemas(args.out):
        if not args.quiet:
            print(path)
    return 0


def _run(config_path: Path, *, verbose: bool, quiet: bool) -> int:
    from satellite.config import load_settings, warn_insecure_files
    from satellite.runtime.daemon import Daemon
    from satellite.runtime.logs import under_systemd
    from satellite.runtime.systemd import Notifier

    settings = load_settings(config_path)
    if under_systemd(os.environ):
        fields = {"ROOM_ID": settings.room_id, "SATELLITE_ID": settings.satellite_id}
        setup_logging(verbose=verbose, quiet=quiet, journal_fields=fields)
    for warning in warn_insecure_files(settings, config_path):
        logging.getLogger(__name__).warning("%s", warning)
    daemon = Daemon(
        config_path=config_path,
        settings=settings,
        notifier=Notifier.from_environ(os.environ),
        reload_record=_reload_record(),
    )
    daemon.install_signal_handlers()
    return daemon.run()


def _reload_record() -> Path | None:
    """Where the daemon keeps its reload record: systemd's RuntimeDirectory (the first)."""
    from satellite.runtime.reload_record import RECORD_NAME

    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return Path(runtime) / RECORD_NAME if runtime else None


def _reload(pid: int, record: Path | None, timeout: float) -> int:
    from satellite.runtime.reload_record import request_reload

    if record is None:
        raise SatelliteError("no reload record: pass --record, or run it under systemd")
    done = request_reload(pid, record, timeout=timeout)
    print(f"satellite: reload {done.outcome}", file=sys.stderr if not done.ok else sys.stdout)
    return 0 if done.ok else EX_FAILURE


def _simulate(settings: Settings, wavs: list[Path], *, publish: bool) -> int:
    from satellite.commands.simulate import simulate
    from satellite.mqtt.outbound import Outgoing, build_outbox
    from satellite.runtime.engines import build_machine, client_id

    machine, outbox = build_machine(settings), build_outbox(settings)
    if not publish:
        report = simulate(wavs, machine=machine, outbox=outbox, out=sys.stdout)
    else:
        from satellite.mqtt.link import MqttLink

        with MqttLink(settings.mqtt, client_id=client_id(settings) + "-simulate") as link:
            link.start()
            if not link.wait_connected(10.0):
                raise SatelliteError(
                    f"broker {settings.mqtt.host}:{settings.mqtt.port} unreachable"
                )

            def send(msg: Outgoing) -> None:
                link.publish_wait(msg.topic, msg.message.to_json(), qos=msg.qos, timeout=5.0)

            report = simulate(wavs, machine=machine, outbox=outbox, out=sys.stdout, send=send)
    summary = {
        "audio_s": round(report.audio_s, 2),
        "wall_s": round(report.wall_s, 3),
        "speed_x": round(report.speed, 1),
        "events": report.events,
    }
    print(json.dumps({"simulate": summary}), file=sys.stderr)
    return 0


def _models_install(directory: Path | None, config: Path | None, *, quiet: bool) -> int:
    from satellite.config import ModelsSettings, load_settings
    from satellite.modelfiles import run_install_cli

    if directory is None:
        directory = load_settings(config).models.dir if config else ModelsSettings().dir
    if not quiet:
        return run_install_cli(directory, sys.stdout)
    with open(os.devnull, "w", encoding="utf-8") as silent:
        return run_install_cli(directory, silent)


def _led_test(settings: Settings, seconds: float) -> int:
    from satellite.leds import build_leds, cycle_patterns

    animator = build_leds(settings.leds)
    try:
        shown = cycle_patterns(animator, seconds, lambda name: print(f"showing {name}", flush=True))
    finally:
        animator.close()
    print(f"led-test: {len(shown)} patterns on hat {settings.leds.hat!r}")
    return 0
