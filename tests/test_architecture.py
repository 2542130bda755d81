"""The architecture as tests: the import rules of the layout, and topics spelt in one place.

Every module under satellite/ is parsed with `ast`; every import counts, also those under
`if TYPE_CHECKING:`, inside functions and through `importlib.import_module("...")`. The
rules (README: Code map):

- core imports the standard library, numpy, pydantic, errors and itself, nothing else;
- audio, mqtt, leds (and modelfiles) import core, config, errors and themselves only;
- config imports errors only; runtime imports everything but commands;
- only the MQTT side imports paho, satellite.mqtt.topics and satellite.mqtt.contracts;
- the LED drivers do not import the LED patterns;
- no import cycle between modules, type-level imports included;
- no module but satellite/mqtt/topics.py spells a topic (satellite/ and benchmarks/);
- no module is over 400 lines.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "satellite"

# Which satellite packages each package may import (its own included). `satellite` is the
# root package (its __init__: the version), `__main__` is `python -m satellite`.
BOUNDARY = {"core", "config", "errors"}
MAY_IMPORT: dict[str, set[str]] = {
    "errors": {"errors"},
    "config": {"config", "errors"},
    "core": {"core", "errors"},
    "audio": {"audio", *BOUNDARY},
    "mqtt": {"mqtt", *BOUNDARY},
    "leds": {"leds", *BOUNDARY},
    "modelfiles": {"modelfiles", *BOUNDARY},
    "runtime": {"satellite", "runtime", "audio", "mqtt", "leds", "modelfiles", *BOUNDARY},
    "commands": {"satellite", "commands", "runtime", "audio", "mqtt", "leds", "modelfiles"}
    | BOUNDARY,
    "__main__": {"commands"},
    "satellite": set(),
}
CORE_LIBRARIES = {"numpy", "pydantic"}
MQTT_ONLY = ("paho", "satellite.mqtt.topics", "satellite.mqtt.contracts")
TOPICS_MODULE = PACKAGE / "mqtt" / "topics.py"

MAX_LINES = 400  # STYLE.md: look twice at any module over 400 lines; the layout keeps none


@dataclass(frozen=True)
class Module:
    """One module of the package: its dotted name and its file."""

    name: str
    path: Path

    @property
    def package(self) -> str:
        """The sub-package it belongs to (`core`, `mqtt`, …), or `satellite` for the root."""
        parts = self.name.split(".")
        return parts[1] if len(parts) > 1 else parts[0]

    @property
    def where(self) -> str:
        return str(self.path.relative_to(ROOT))


@dataclass(frozen=True)
class Import:
    """`module` imports `target` (a module's dotted name) on `line`."""

    module: Module
    target: str
    line: int

    @property
    def top(self) -> str:
        return self.target.split(".")[0]

    def __str__(self) -> str:
        return f"{self.module.where}:{self.line}: {self.module.name} imports {self.target}"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Module]:
    found = (Module(module_name(path), path) for path in sorted(PACKAGE.rglob("*.py")))
    return {module.name: module for module in found}


def imports_in(module: Module, source: str, known: set[str]) -> Iterator[Import]:
    """Every import in `source`, at any depth; `from a import b` is a.b when that is a module."""
    is_package = module.path.name == "__init__.py"
    package = module.name if is_package else module.name.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (Import(module, alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, package)
            for alias in node.names:
                name = f"{base}.{alias.name}"
                yield Import(module, name if name in known else base, node.lineno)
        elif (target := _import_module_call(node)) is not None:
            yield Import(module, target, getattr(node, "lineno", 0))


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    base = parts[: len(parts) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def _import_module_call(node: ast.AST) -> str | None:
    """The literal name in `importlib.import_module("name")`, else None."""
    if not isinstance(node, ast.Call) or not node.args:
        return None
    func, first = node.func, node.args[0]
    if not (isinstance(func, ast.Attribute) and func.attr == "import_module"):
        return None
    return _text(first) if isinstance(first, ast.Constant) else None


@cache
def all_imports() -> tuple[Import, ...]:
    known = set(modules())
    every = (
        found
        for module in modules().values()
        for found in imports_in(module, module.path.read_text(encoding="utf-8"), known)
    )
    return tuple(dict.fromkeys(every))  # `from a import b, c` once, not per name


def internal(found: Import) -> bool:
    return found.top == "satellite"


def package_of(target: str) -> str:
    """The sub-package of an imported satellite module (`satellite` for the root)."""
    parts = target.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def fail_on(violations: list[str], rule: str) -> None:
    assert not violations, f"{rule}:\n" + "\n".join(violations)


# --- the import rules ----------------------------------------------------------------------


def test_every_module_belongs_to_a_layer() -> None:
    unknown = [
        f"{m.where}: package {m.package!r}"
        for m in modules().values()
        if m.package not in MAY_IMPORT
    ]
    fail_on(unknown, "a new sub-package needs its rule in MAY_IMPORT (and README: Code map)")


def test_packages_import_only_what_the_layout_allows() -> None:
    violations = [
        f"{found} ({found.module.package} may import {', '.join(sorted(allowed))})"
        for found in all_imports()
        if internal(found)
        and package_of(found.target) not in (allowed := MAY_IMPORT.get(found.module.package, set()))
    ]
    fail_on(violations, "an import against the layering")


def test_the_core_imports_no_adapter_library() -> None:
    violations = [
        f"{found} (the core takes frames and emits events: the standard library, "
        f"{', '.join(sorted(CORE_LIBRARIES))} and satellite.core/errors only)"
        for found in all_imports()
        if found.module.package == "core"
        and not internal(found)
        and found.top not in sys.stdlib_module_names
        and found.top not in CORE_LIBRARIES
    ]
    fail_on(violations, "the core imports an I/O or adapter library")


def test_only_the_mqtt_side_imports_paho_topics_and_contracts() -> None:
    violations = [
        f"{found} (go through a satellite.mqtt module that is not topics or contracts)"
        for found in mqtt_only_outside()
    ]
    fail_on(violations, "paho, topics or contracts imported outside satellite.mqtt")


def mqtt_only_outside() -> list[Import]:
    return [
        found
        for found in all_imports()
        if found.module.package != "mqtt"
        and any(found.target == name or found.target.startswith(name + ".") for name in MQTT_ONLY)
    ]


def test_no_module_is_over_400_lines() -> None:
    long = [
        f"{m.path.relative_to(ROOT)}: {lines} lines"
        for m in modules().values()
        if (lines := len(m.path.read_text().splitlines())) > MAX_LINES
    ]
    fail_on(long, f"split these modules (at most {MAX_LINES} lines each)")


def test_led_drivers_do_not_import_the_patterns() -> None:
    violations = [
        f"{found} (drivers draw pixels; they know nothing of patterns)"
        for found in all_imports()
        if found.module.name == "satellite.leds.drivers"
        and found.target == "satellite.leds.patterns"
    ]
    fail_on(violations, "satellite.leds.drivers imports satellite.leds.patterns")


def test_config_imports_only_errors() -> None:
    violations = [
        f"{found} (the settings are the bottom layer: config imports satellite.errors only)"
        for found in all_imports()
        if found.module.package == "config"
        and internal(found)
        and package_of(found.target) not in {"config", "errors"}
    ]
    fail_on(violations, "satellite.config imports another satellite package")


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in modules()}
    for found in all_imports():
        if internal(found) and found.target != found.module.name:
            graph[found.module.name].add(found.target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while (top := stack.pop()) != node:
                component.append(top)
            component.append(node)
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_type_level_included() -> None:
    graph = import_graph()
    violations = []
    for component in cycles(graph):
        members = set(component)
        edges = [
            str(found)
            for found in all_imports()
            if found.module.name in members and found.target in members
        ]
        violations.append(f"cycle {' <-> '.join(component)}:\n  " + "\n  ".join(edges))
    fail_on(violations, "modules import each other (type-level imports count)")


# --- topics are spelt in satellite/mqtt/topics.py only -------------------------------------

# Levels that make a string with a `/` a topic path: the base prefix and the fixed levels of
# the contract (DESIGN.md), the MQTT wildcards, and the level pairs around ids.
_TOPIC_LEVELS = {"voice_assistant", "overlay_hint", "household", "transcript", "+", "#"}
_FOLLOWED = {"room", "session"}  # `room/{room_id}`, `session/{session_id}`
_PAIRS = {("wake", "claim"), ("wake", "result")}
_SATELLITE_LEAVES = {"status", "command", "+"}  # satellite/{id}/status, a filesystem path not


def topic_like(text: str) -> bool:
    """Whether `text` (placeholders as `{}`) is an MQTT topic path or a piece of one.

    A bare level ("overlay_hint", a schema name; "voice_assistant", the setting's default)
    is not a path; "v1/voice_assistant/room/…", "{}/session/{}" and "transcript/final" are.
    """
    if "/" not in text:
        return False
    levels = text.split("/")
    if _TOPIC_LEVELS & set(levels):
        return True
    for i, level in enumerate(levels[:-1]):
        after = levels[i + 1 :]
        if level in _FOLLOWED or (level, after[0]) in _PAIRS:
            return True
        if level == "satellite" and len(after) > 1 and after[1] in _SATELLITE_LEAVES:
            return True
    return False


def _docstrings(tree: ast.AST) -> set[int]:
    nodes = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    ids = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None) if isinstance(node, nodes) else None
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            ids.add(id(body[0].value))
    return ids


def _text(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_text(part) or "{}" for part in node.values)
    return None


def spelt_topics(source: str) -> Iterator[tuple[int, str]]:
    """(line, text) of each string literal or f-string in `source` that is topic-like;
    docstrings document the contract and are left out."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    inner = {
        id(part)
        for node in ast.walk(tree)
        if isinstance(node, ast.JoinedStr)
        for part in node.values
    }
    for node in ast.walk(tree):
        if id(node) in skip or id(node) in inner:
            continue
        text = _text(node)
        if text is not None and topic_like(text):
            yield getattr(node, "lineno", 0), text


def test_no_module_but_topics_spells_a_topic() -> None:
    files = [*sorted(PACKAGE.rglob("*.py")), *sorted((ROOT / "benchmarks").rglob("*.py"))]
    violations = [
        f"{path.relative_to(ROOT)}:{line}: {text!r} (build it with satellite.mqtt.topics)"
        for path in files
        if path != TOPICS_MODULE
        for line, text in spelt_topics(path.read_text(encoding="utf-8"))
    ]
    fail_on(violations, "a topic spelt outside satellite/mqtt/topics.py")


# --- the checks themselves see what they must ----------------------------------------------


def test_imports_are_found_at_every_level() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from satellite.mqtt.topics import Topics\n"
        "def later():\n"
        "    import paho.mqtt.client\n"
        "    from . import frames\n"
        "    return importlib.import_module('vosk')\n"
    )
    module = Module("satellite.core.session", PACKAGE / "core" / "session.py")
    known = {"satellite.core.frames", "satellite.mqtt.topics"}
    targets = {found.target for found in imports_in(module, source, known)}
    assert {"satellite.mqtt.topics", "paho.mqtt.client", "satellite.core.frames", "vosk"} <= targets


def test_a_cycle_is_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_topic_paths_are_found_and_other_strings_are_not() -> None:
    source = (
        '"""Docs may name v1/voice_assistant/room/{room}/session/{id}/state."""\n'
        'A = "v1/voice_assistant/room/salon/session/+/#"\n'
        'B = f"{base}/session/{sid}/{kind}"\n'
        'C = "transcript/final"\n'
        'D = f"{room}/satellite/{sid}/status"\n'
        'E = "wake/claim"\n'
        'F = "/var/lib/satellite/models"\n'
        'G = f"/etc/satellite/{room}.toml"\n'
        'H = "overlay_hint"\n'
        'I = "firmware-config/hats"\n'
    )
    assert sorted(line for line, _ in spelt_topics(source)) == [2, 3, 4, 5, 6]
