"""The configuration reference (generated from the pydantic model) and the effective config.

`satellite config --write docs/configuration.md` regenerates the reference;
`--check FILE` exits 1 when FILE is stale (CI runs it through tests/test_config_doc.py).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import types
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Annotated, Any, Literal, TextIO, TypeGuard, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from satellite.config import ENV_ALIASES, Settings, load_settings, read_toml

ENV_PREFIX = "SATELLITE_"
MASK = "********"
_SECRET_WORDS = ("password", "secret", "token")
# Defaults computed on the host at start-up: the reference names them instead of showing ours.
_DYNAMIC_DEFAULTS = {("satellite_id",): "host name + 6 hex (machine-id)"}
_UNIT_SUFFIXES = {
    "_s": "seconds",
    "_ms": "milliseconds",
    "_bytes": "bytes",
    "_frames": "80 ms frames",
}
_UNITS = {("audio", "rate"): "Hz", ("leds", "fps"): "frames per second"}
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_CONSTRAINTS = (
    (annotated_types.Ge, "ge", ">="),
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Le, "le", "<="),
    (annotated_types.Lt, "lt", "<"),
    (annotated_types.MinLen, "min_length", "at least {} items"),
)


@dataclass(frozen=True)
class Key:
    """One leaf of the configuration: `path` ("mqtt", "port") and its pydantic field."""

    path: tuple[str, ...]
    field: FieldInfo

    @property
    def dotted(self) -> str:
        """The key as the docs and errors spell it: `mqtt.port`."""
        return ".".join(self.path)

    @property
    def env_names(self) -> list[str]:
        """Environment variables that set it: the fixed aliases first, then SATELLITE_…."""
        aliases = [name for name, target in ENV_ALIASES.items() if target == self.path]
        return [*aliases, ENV_PREFIX + "__".join(self.path).upper()]

    @property
    def is_secret(self) -> bool:
        """Masked when shown: its name says secret, and it holds the value, not a path to it."""
        name = self.path[-1].lower()
        return any(w in name for w in _SECRET_WORDS) and PurePath not in _classes(self.field)


def config_keys(model: type[BaseModel] = Settings) -> list[Key]:
    """Every leaf key, top-level keys first, then each section's in declaration order."""
    return list(_keys(model, ()))


def sections(model: type[BaseModel] = Settings) -> dict[tuple[str, ...], type[BaseModel]]:
    """The sub-models, by path: `("mqtt",): MqttSettings`."""
    found: dict[tuple[str, ...], type[BaseModel]] = {}
    for name, field in model.model_fields.items():
        if _is_section(field.annotation):
            found[(name,)] = field.annotation
    return found


def _keys(model: type[BaseModel], prefix: tuple[str, ...]) -> Iterator[Key]:
    nested = []
    for name, field in model.model_fields.items():
        if _is_section(field.annotation):
            nested.append((name, field.annotation))
        else:
            yield Key((*prefix, name), field)
    for name, section in nested:
        yield from _keys(section, (*prefix, name))


def _is_section(annotation: Any) -> TypeGuard[type[BaseModel]]:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


# --- where each value came from ----------------------------------------------------------------


def value_sources(file_data: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    """For every key: "env NAME", "file" or "default", in the order pydantic-settings applies
    them (ENV_ALIASES, then SATELLITE_… case-insensitively, then the file)."""
    upper = {name.upper(): name for name in environ}
    sources = {}
    for key in config_keys():
        env = _env_setting(key, environ, upper)
        if env is not None:
            sources[key.dotted] = f"env {env}"
        elif _lookup(file_data, key.path) is not None:
            sources[key.dotted] = "file"
        else:
            sources[key.dotted] = "default"
    return sources


def _env_setting(key: Key, environ: Mapping[str, str], upper: Mapping[str, str]) -> str | None:
    for alias, target in ENV_ALIASES.items():
        if target == key.path and alias in environ:
            return alias
    exact = ENV_PREFIX + "__".join(key.path).upper()
    for name, original in upper.items():
        if name == exact or name.startswith(exact + "__"):  # dict keys nest one level more
            return original
    # A whole section as JSON: SATELLITE_MQTT='{"port": 1884}'.
    for depth in range(1, len(key.path)):
        section = upper.get(ENV_PREFIX + "__".join(key.path[:depth]).upper())
        if section is not None and _lookup(_json(environ[section]), key.path[depth:]) is not None:
            return section
    return None


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _lookup(data: Any, path: Sequence[str]) -> Any:
    for part in path:
        if not isinstance(data, Mapping) or part not in data:
            return None
        data = data[part]
    return data


# --- the Markdown reference --------------------------------------------------------------------

_HEADER = """\
# Configuration reference

<!-- Generated from satellite/config/ by `satellite config --write docs/configuration.md`. \
Do not edit: tests/test_config_doc.py fails when it is stale. -->

One TOML file per room, `/etc/satellite/<room>.toml`; only `room_id` is required. The
environment overrides the file: `SATELLITE_` and the key in capitals with `__` between levels
(`mqtt.port` is `SATELLITE_MQTT__PORT`; lists and tables as JSON, e.g.
`SATELLITE_WAKE__MODELS='["hey_jarvis"]'`), and a few fixed names shared with the rest of the
assistant, listed first in the env column, which win over the `SATELLITE_` ones.

`satellite config --show --config FILE` prints the configuration in effect (secrets masked),
`satellite check --config FILE --verbose` also says where each value came from (file,
environment or default).
"""
_TABLE_HEAD = "| key | type | default | unit | env | description |\n|---|---|---|---|---|---|"


def render_reference(model: type[BaseModel] = Settings) -> str:
    """The Markdown reference of every key: type, default, unit, constraints, env names."""
    keys = config_keys(model)
    parts = [_HEADER, "## Top level\n", _TABLE_HEAD]
    parts += [_row(key) for key in keys if len(key.path) == 1]
    for path, section in sections(model).items():
        doc = (section.__doc__ or "").strip().splitlines()[0]
        parts += ["", f"## `[{'.'.join(path)}]`\n", f"{doc}\n", _TABLE_HEAD]
        parts += [_row(key) for key in keys if key.path[:-1] == path]
    return "\n".join(parts) + "\n"


def _row(key: Key) -> str:
    limits = _constraints(key.field)
    cells = [
        f"`{key.dotted}`",
        _type_name(key.field.annotation) + (f" ({limits})" if limits else ""),
        _default_text(key),
        _unit(key),
        "<br>".join(f"`{name}`" for name in key.env_names),
        " ".join((key.field.description or "").split()),
    ]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _unit(key: Key) -> str:
    if key.path in _UNITS:
        return _UNITS[key.path]
    name = key.path[-1]
    return next((unit for suffix, unit in _UNIT_SUFFIXES.items() if name.endswith(suffix)), "")


def _constraints(field: FieldInfo) -> str:
    found = []
    for item in field.metadata:
        for kind, attribute, template in _CONSTRAINTS:
            if isinstance(item, kind):
                value = getattr(item, attribute)
                found.append(template.format(value) if "{}" in template else f"{template} {value}")
    return ", ".join(found)


def _default_text(key: Key) -> str:
    if key.path in _DYNAMIC_DEFAULTS:
        return _DYNAMIC_DEFAULTS[key.path]
    if key.field.is_required():
        return "**required**"
    value = key.field.get_default(call_default_factory=True)
    return "unset" if value is None else f"`{toml_value(_plain(value))}`"


def _type_name(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _type_name(args[0])
    if origin in (Union, types.UnionType):
        named = [_type_name(arg) for arg in args if arg is not type(None)]
        optional = ", optional" if type(None) in args else ""
        return " or ".join(named) + optional
    if origin is Literal:
        return "one of " + ", ".join(f'"{arg}"' for arg in args)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"table of {_type_name(args[1])}"
    names = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _classes(field: FieldInfo) -> set[type]:
    """Every class mentioned in the field's type (through Optional, list, Annotated…)."""
    found: set[type] = set()
    pending = [field.annotation]
    while pending:
        current = pending.pop()
        if isinstance(current, type):
            found.update(current.__mro__)
        pending.extend(get_args(current))
    return found


# --- the effective configuration as TOML -------------------------------------------------------


def render_effective(settings: Settings, *, sources: Mapping[str, str] | None = None) -> str:
    """The configuration in effect as TOML, each value with its source when `sources` is given.

    Secrets are masked; a password *file* is shown by its path and never read.
    """
    lines = [
        f"# Configuration in effect for room {settings.room_id!r} (secrets masked).",
        "# Loadable as a room file; the reference is docs/configuration.md.",
    ]
    current: tuple[str, ...] = ()
    for key in config_keys(type(settings)):
        section = key.path[:-1]
        if section != current:
            lines += ["", f"[{'.'.join(section)}]"]
            current = section
        lines.append(_effective_line(key, _lookup_model(settings, key.path), sources))
    return "\n".join(lines) + "\n"


def effective_values(settings: Settings, sources: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Every key's value (TOML-ready, secrets masked, None when unset) and its source."""
    values = {}
    for key in config_keys(type(settings)):
        value = _lookup_model(settings, key.path)
        shown = MASK if key.is_secret and value is not None else _plain(value)
        values[key.dotted] = {"value": shown, "source": sources.get(key.dotted, "default")}
    return values


def _effective_line(key: Key, value: Any, sources: Mapping[str, str] | None) -> str:
    name = _toml_key(key.path[-1])
    source = (sources or {}).get(key.dotted)
    if value is None:
        return f"# {name} is unset" + (f" ({source})" if source else "")
    shown = MASK if key.is_secret else _plain(value)
    return f"{name} = {toml_value(shown)}" + (f"  # {source}" if source else "")


def _lookup_model(model: BaseModel, path: Sequence[str]) -> Any:
    value: Any = model
    for part in path:
        value = getattr(value, part)
    return value


def _plain(value: Any) -> Any:
    """Paths as strings, tuples as lists, models as dicts: what TOML can hold."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def toml_value(value: Any) -> str:
    """One TOML value: string, boolean, number, array or inline table."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)  # inf, -inf, nan
    if isinstance(value, str):
        # JSON escapes are TOML escapes, except that TOML also wants DEL escaped.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007F")
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{_toml_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _toml_key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else toml_value(name)


# --- the command -------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`satellite config`: --show (the default), --reference, --write FILE, --check FILE."""
    parser.add_argument("--config", type=Path, help="the room's TOML file (for --show)")
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--show", action="store_true", help="print the configuration in effect, secrets masked"
    )
    action.add_argument(
        "--reference", action="store_true", help="print the Markdown reference of every key"
    )
    action.add_argument("--write", type=Path, metavar="FILE", help="write the reference to FILE")
    action.add_argument(
        "--check", type=Path, metavar="FILE", help="exit 1 when FILE is not the current reference"
    )


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run `satellite config` with parsed arguments; the exit status."""
    if args.reference:
        out.write(render_reference())
        return 0
    if args.write is not None:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(render_reference(), encoding="utf-8")
        print(args.write, file=out)
        return 0
    if args.check is not None:
        return _check_file(args.check, out)
    settings = load_settings(args.config)
    data = read_toml(args.config) if args.config is not None else {}
    out.write(render_effective(settings, sources=value_sources(data, os.environ)))
    return 0


def _check_file(path: Path, out: TextIO) -> int:
    try:
        current = path.read_text(encoding="utf-8")
    except OSError as exc:
        current = f"(unreadable: {exc.strerror})"
    if current == render_reference():
        print(f"{path} is current", file=out)
        return 0
    print(f"{path} is stale: run `satellite config --write {path}` and commit it", file=out)
    return 1
